"""Three worker processes race for a 1-second schedule: one job per tick, none missing."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path

import pytest

import corral

from .test_multiprocess import PROCESSES, reap, spawn, wait_until_ready

SECONDS = float(os.environ.get("CORRAL_SCHEDULE_RACE_SECONDS", "30"))


async def create_schedule(url: str) -> None:
    async with corral.Queue("mp", url=url) as queue:
        await queue.schedule("tick", every=1, remove_on_complete=True)


async def schedule_state(url: str) -> corral.schedules.Schedule:
    async with corral.Queue("mp", url=url) as queue:
        [schedule] = await queue.schedules()
        return schedule


@pytest.mark.slow
def test_a_one_second_schedule_fires_once_per_tick_across_processes(
    store_url: str, tmp_path: Path
) -> None:
    outs = [tmp_path / f"worker-{n}.txt" for n in range(PROCESSES)]
    readies = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    procs = [
        spawn("serve", store_url, "mp", str(out), str(ready))
        for out, ready in zip(outs, readies, strict=True)
    ]
    try:
        wait_until_ready(procs, readies)
        asyncio.run(create_schedule(store_url))
        time.sleep(SECONDS)  # real processes on the real clock: this test is about wall time
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        results = [proc.communicate(timeout=30) for proc in procs]
    finally:
        reap(procs)
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr

    ran = [line for out in outs for line in out.read_text().split()]
    assert len(ran) == len(set(ran)), "a tick ran twice"
    ticks = sorted(int(job_id.rsplit(":", 1)[1]) for job_id in ran)
    assert len(ticks) >= SECONDS - 2
    assert {b - a for a, b in itertools.pairwise(ticks)} == {1000}, "a tick is missing"
    schedule = asyncio.run(schedule_state(store_url))
    # The last tick may have been fired after the workers ran their last job, never before.
    assert schedule.count - len(ticks) in (0, 1)
