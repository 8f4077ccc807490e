"""Worker processes on one store: every job runs exactly once, none is lost; signals stop them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import corral

JOBS = 2000
PROCESSES = 3
SCRIPT = Path(__file__).with_name("mp_worker.py")


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_ready(procs: list[subprocess.Popen[str]], readies: list[Path]) -> None:
    deadline = time.monotonic() + 20
    while not all(ready.exists() for ready in readies):
        assert all(proc.poll() is None for proc in procs), "a worker process died"
        assert time.monotonic() < deadline, "worker processes did not start"
        time.sleep(0.01)


def reap(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


async def add_jobs(url: str) -> set[str]:
    async with corral.Queue("mp", url=url) as queue:
        added = await queue.add_bulk(
            [corral.JobSpec("m", {"i": i}, remove_on_complete=False) for i in range(JOBS)]
        )
    return {job.id for job in added}


async def counts(url: str) -> dict[str, int]:
    async with corral.Queue("mp", url=url) as queue:
        return await queue.counts()


def run_burst_workers(url: str, tmp_path: Path) -> list[list[str]]:
    """Start the worker processes together; the job ids each one ran."""
    go = tmp_path / "go"
    outs = [tmp_path / f"worker-{n}.txt" for n in range(PROCESSES)]
    readies = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    procs = [
        spawn("burst", url, "mp", str(out), str(ready), str(go))
        for out, ready in zip(outs, readies, strict=True)
    ]
    try:
        wait_until_ready(procs, readies)
        go.touch()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        reap(procs)
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
        assert "database is locked" not in stderr, stderr
    return [out.read_text().split() if out.exists() else [] for out in outs]


@pytest.mark.slow
def test_three_processes_run_each_job_exactly_once(store_url: str, tmp_path: Path) -> None:
    ids = asyncio.run(add_jobs(store_url))
    assert len(ids) == JOBS

    per_process = run_burst_workers(store_url, tmp_path)

    ran = [job_id for lines in per_process for job_id in lines]
    assert len(ran) == len(set(ran)), f"{len(ran) - len(set(ran))} runs were repeats"
    assert set(ran) == ids, f"{len(ids - set(ran))} jobs never ran"
    assert sum(1 for lines in per_process if lines) >= 2, "only one process did any work"
    final = asyncio.run(counts(store_url))
    assert final["completed"] == JOBS
    assert final["waiting"] == final["active"] == final["failed"] == 0


async def add_and_time(url: str, job_id: str) -> float:
    """Seconds from adding a job until another process has completed it."""
    async with corral.Queue("mp", url=url) as queue:
        started = time.monotonic()
        job = await queue.add("m", {}, job_id=job_id)
        await job.wait_until_finished(timeout=10)
        return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_worker_process_notices_new_jobs_and_stops_on_signal(
    store_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    ready = tmp_path / "ready"
    out = tmp_path / "serve.txt"
    proc = spawn("serve", store_url, "mp", str(out), str(ready))
    try:
        wait_until_ready([proc], [ready])
        asyncio.run(add_and_time(store_url, "warm-up"))
        time.sleep(0.3)  # let the worker go idle

        latency = asyncio.run(add_and_time(store_url, "timed"))

        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=10)
    finally:
        reap([proc])

    assert proc.returncode == 0, stderr
    assert out.read_text().split() == ["warm-up", "timed"]
    # An idle worker is woken by the commit, not by a fixed poll of a second or more.
    assert latency < 0.5
