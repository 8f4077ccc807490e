"""A rate limit and a queue concurrency hold across three worker processes."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path

import pytest

import corral

from .test_limits import max_in_window
from .test_multiprocess import PROCESSES, reap, spawn, wait_until_ready

JOBS = 24
LIMIT, PER = 6, 1.0


async def prepare(url: str) -> None:
    async with corral.Queue("mp", url=url) as queue:
        await queue.configure(limiter=corral.RateLimit(LIMIT, per=PER))
        await queue.add_bulk(
            [corral.JobSpec("m", {"i": i}, remove_on_complete=False) for i in range(JOBS)]
        )


async def starts(url: str) -> list[float]:
    async with corral.Queue("mp", url=url) as queue:
        done = await queue.jobs("completed", limit=1000)
        return [job.processed_at.timestamp() for job in done if job.processed_at]


@pytest.mark.slow
def test_a_rate_limit_holds_across_worker_processes(store_url: str, tmp_path: Path) -> None:
    outs = [tmp_path / f"worker-{n}.txt" for n in range(PROCESSES)]
    readies = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    procs = [
        spawn("serve", store_url, "mp", str(out), str(ready))
        for out, ready in zip(outs, readies, strict=True)
    ]
    try:
        wait_until_ready(procs, readies)
        asyncio.run(prepare(store_url))
        deadline = time.monotonic() + 30
        while len(asyncio.run(starts(store_url))) < JOBS:
            assert time.monotonic() < deadline, "the jobs did not all run"
            time.sleep(0.2)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=30)
    finally:
        reap(procs)
    started = asyncio.run(starts(store_url))
    assert len(started) == JOBS
    assert max_in_window(started, PER) <= LIMIT
    ran = list(itertools.chain.from_iterable(out.read_text().split() for out in outs))
    assert len(ran) == len(set(ran)) == JOBS
