"""Throughput and latency of corral on the embedded SQLite store.

Measures, on a fresh SQLite file in a temporary directory:

- enqueueing jobs one by one with `Queue.add` (jobs/s);
- enqueueing with `Queue.add_bulk` in chunks of 1000 (jobs/s);
- processing noop jobs with one Worker at concurrency 1 and 50 (jobs/s). The worker runs in
  this process with `run(burst=True)`; the time runs from the first job's start until `run`
  returns, that is until every completion is acknowledged in the store;
- add→start latency, p50 and p99, with an idle worker in a separate process: the producer puts
  `time.time()` in each job's data, the worker's processor writes its own start time to a file.

Usage: python benchmarks/sqlite_throughput.py [--jobs 10000] [--latency-jobs 500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import corral

CHUNK = 1000
WAIT_LIMIT = 60.0  # seconds to wait for the latency worker before giving up


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


async def noop(job: corral.Job) -> None:
    """The processor of the throughput runs: does nothing."""


async def enqueue_one_by_one(url: str, jobs: int) -> float:
    """Jobs/s for `jobs` awaited `Queue.add` calls."""
    async with corral.Queue("bench-add", url=url) as queue:
        await queue.add("noop", {"i": -1})  # open the store outside the timing
        started = time.perf_counter()
        for i in range(jobs):
            await queue.add("noop", {"i": i})
        return jobs / (time.perf_counter() - started)


async def enqueue_bulk(url: str, queue_name: str, jobs: int) -> float:
    """Jobs/s for `add_bulk` in chunks of CHUNK jobs."""
    async with corral.Queue(queue_name, url=url) as queue:
        await queue.ping()
        started = time.perf_counter()
        for first in range(0, jobs, CHUNK):
            count = min(CHUNK, jobs - first)
            await queue.add_bulk([corral.JobSpec("noop", {"i": first + i}) for i in range(count)])
        return jobs / (time.perf_counter() - started)


async def process(url: str, jobs: int, concurrency: int) -> float:
    """Jobs/s for one in-process Worker working off `jobs` noop jobs in burst mode."""
    queue_name = f"bench-c{concurrency}"
    await enqueue_bulk(url, queue_name, jobs)
    first_start: list[float] = []

    async def timed_noop(job: corral.Job) -> None:
        if not first_start:
            first_start.append(time.perf_counter())

    worker = corral.Worker(queue_name, timed_noop, url=url, concurrency=concurrency)
    ran = await worker.run(burst=True)
    finished = time.perf_counter()
    if ran != jobs or not first_start:
        raise RuntimeError(f"the worker ran {ran} attempts, expected {jobs}")
    return jobs / (finished - first_start[0])


# -- latency ---------------------------------------------------------------------------------


def serve_latency(url: str, results: str) -> None:
    """The latency worker's process: record each job's add time and start time, until SIGTERM."""
    with open(results, "a", buffering=1) as out:
        async def record(job: corral.Job) -> None:
            out.write(f"{job.data['t']} {time.time()}\n")

        worker = corral.Worker("bench-latency", record, url=url, concurrency=10)
        asyncio.run(worker.run(handle_signals=True))


def lines_in(path: Path) -> int:
    """How many results the latency worker has written so far."""
    return len(path.read_text().splitlines()) if path.exists() else 0


async def wait_for_lines(path: Path, count: int, child: subprocess.Popen[bytes]) -> None:
    """Wait until the latency worker wrote `count` results."""
    deadline = time.monotonic() + WAIT_LIMIT
    while lines_in(path) < count:
        if child.poll() is not None:
            raise RuntimeError(f"the latency worker exited with status {child.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the latency worker wrote {lines_in(path)} of {count} results")
        await asyncio.sleep(0.05)


async def produce_probes(
    url: str, jobs: int, interval: float, results: Path, child: subprocess.Popen[bytes]
) -> None:
    """Add one warm-up job, then `jobs` probes `interval` seconds apart."""
    async with corral.Queue("bench-latency", url=url) as queue:
        await queue.add("warmup", {"t": time.time()})
        await wait_for_lines(results, 1, child)  # the worker is up and idle
        for _ in range(jobs):
            await queue.add("probe", {"t": time.time()})
            await asyncio.sleep(interval)
        await wait_for_lines(results, jobs + 1, child)


def latency(url: str, workdir: Path, jobs: int, interval: float) -> tuple[float, float]:
    """p50 and p99 add→start latency in milliseconds, with the worker in another process."""
    results = workdir / "starts.txt"
    child = subprocess.Popen([sys.executable, __file__, "--serve", url, str(results)])
    try:
        asyncio.run(produce_probes(url, jobs, interval, results, child))
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    rows = [line.split() for line in results.read_text().splitlines()[1:]]  # skip the warm-up
    delays = sorted((float(start) - float(added)) * 1000 for added, start in rows)
    return statistics.median(delays), statistics.quantiles(delays, n=100)[98]


# -- main ------------------------------------------------------------------------------------


def measure(jobs: int, latency_jobs: int, interval: float) -> dict[str, Any]:
    """Run every measurement on a fresh SQLite file; the results by name."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'bench.db'}"
        results: dict[str, Any] = {
            "jobs": jobs, "latency_jobs": latency_jobs, "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version, "worker": "in-process, run(burst=True)",
        }
        log(f"enqueueing {jobs} jobs one by one ...")
        results["add_per_s"] = asyncio.run(enqueue_one_by_one(url, jobs))
        log(f"enqueueing {jobs} jobs in chunks of {CHUNK} ...")
        results["add_bulk_per_s"] = asyncio.run(enqueue_bulk(url, "bench-bulk", jobs))
        for concurrency in (1, 50):
            log(f"processing {jobs} noop jobs at concurrency {concurrency} ...")
            results[f"process_c{concurrency}_per_s"] = asyncio.run(
                process(url, jobs, concurrency)
            )
        log(f"measuring add→start latency over {latency_jobs} jobs ...")
        p50, p99 = latency(url, workdir, latency_jobs, interval)
        results["latency_p50_ms"], results["latency_p99_ms"] = p50, p99
        return results


def table(results: dict[str, Any]) -> str:
    """The results as a small plain-text table."""
    rows = [
        ("add, one by one", f"{results['add_per_s']:,.0f} jobs/s"),
        (f"add_bulk, chunks of {CHUNK}", f"{results['add_bulk_per_s']:,.0f} jobs/s"),
        ("process noop, concurrency 1", f"{results['process_c1_per_s']:,.0f} jobs/s"),
        ("process noop, concurrency 50", f"{results['process_c50_per_s']:,.0f} jobs/s"),
        ("add→start latency p50", f"{results['latency_p50_ms']:.1f} ms"),
        ("add→start latency p99", f"{results['latency_p99_ms']:.1f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    head = (f"corral on SQLite {results['sqlite']}, Python {results['python']}, "
            f"{results['jobs']:,} jobs, worker {results['worker']}")
    return "\n".join([head, *(f"  {name:<{width}}  {value:>14}" for name, value in rows)])


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument("--latency-jobs", type=int, default=500, help="latency probes")
    parser.add_argument("--latency-interval", type=float, default=0.02,
                        help="seconds between latency probes, so the worker is idle for each")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "RESULTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_latency(*args.serve)
        return
    if args.jobs < 1 or args.latency_jobs < 2:
        parser.error("--jobs must be >= 1 and --latency-jobs >= 2")
    results = measure(args.jobs, args.latency_jobs, args.latency_interval)
    print(json.dumps(results, indent=2) if args.json else table(results))


if __name__ == "__main__":
    main()
