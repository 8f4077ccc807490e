"""`corral bench`: how fast a store takes, runs and schedules jobs, measured on this machine.

Every workload runs on the queue `corral-bench`, emptied before each workload and at the end,
so a real store can be measured without touching its other queues. Without `--url` the store
is a SQLite file in a temporary directory, removed afterwards.

- `add`: N jobs added one `Queue.add` at a time, each awaited before the next (jobs/s).
- `add-bulk`: N jobs through `Queue.add_bulk` in chunks of 1000 (jobs/s).
- `process-1`, `process-n`: N noop jobs are added first (not timed), then one worker process
  at concurrency 1, or `--concurrency`, works them off with `run(burst=True)`. Timed inside
  that process from the start of the first job to the return of `run`, when the last
  completion is acknowledged in the store (jobs/s). Its start-up is reported apart.
  With `--processes 1,2,4`, `process-n` runs once per count: P worker processes started
  together on the same N jobs, timed from the earliest first start among them to the latest
  return of `run` (`process-n`, `process-n-2p`, `process-n-4p`). A process that found
  nothing left to run is not part of the timing; together they must run each job once.
- `latency`: an idle worker in another process; jobs are added one at a time, 5 ms apart,
  each carrying the wall time just before its `add`; the processor notes its start time
  minus that stamp (add→start: p50, p99, max in ms).
- `delayed`: jobs added 5 ms apart with delays spread over 50–500 ms; the processor notes how
  long after its due time (`job.run_at`) each one started: p50, p99, max, and how many
  started early (there should be none).
- `memory`: N waiting jobs with 50 bytes of JSON data each, added with `add_bulk`: how many
  bytes of store each one takes, after a warm-up add on the emptied queue. On Redis, the
  growth of INFO `used_memory`; on SQLite, the growth of the database file's pages in use
  plus its WAL, read after a `wal_checkpoint(TRUNCATE)` (the adds reuse the pages that the
  earlier workloads freed, so the file's own size would hardly move).

On Redis, the throughput workloads also report the redis-server CPU time (INFO cpu, system
plus user) spent per job over their timed part, read through a client of their own. For the
process workloads that is from after the (untimed) adds until the worker processes have
exited. It is the whole server's CPU: other clients of the same server count too.

The workers run in child processes (`python -m corral.cli bench --child SPEC`), so the
producer's event loop never shares their CPU time slices with their loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import click
import orjson
import redis
import redis.cluster
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from corral import __version__
from corral.backends import SQLITE_SCHEMES, redact, resolve_url, sqlite_path, url_params
from corral.backends.redis.connection import Settings
from corral.backends.redis.keys import queue_prefix
from corral.clock import SYSTEM, monotonic, sleep_blocking
from corral.job import Job
from corral.options import JobSpec
from corral.queue import Queue
from corral.worker import Worker

from .common import announce, run, stdout

BENCH_QUEUE = "corral-bench"
CHUNK = 1000  # jobs per add_bulk call
SPACING = 0.005  # seconds between two latency or delayed jobs, so the worker is idle for each
DELAY_MS = (50, 500)  # range of the delayed jobs' delays
SETTLE = 0.5  # seconds the latency worker idles after its warm-up job
POLL = 0.25  # seconds between two looks at a child's progress
CHILD_TIMEOUT = 30.0  # seconds a child may go without progress before we give up
PROGRESS_STEP = 250  # producer jobs between two progress updates
PAYLOAD_BYTES = 50  # JSON data of each job of the memory workload
CHECKPOINT_TRIES = 50  # TRUNCATE checkpoints tried, 0.1 s apart, before a size is read anyway

WORKLOADS: dict[str, str] = {
    "add": "add, one by one",
    "add-bulk": f"add_bulk, chunks of {CHUNK}",
    "process-1": "process noop, concurrency 1",
    "process-n": "process noop, concurrency {concurrency}",
    "latency": "add→start latency, idle worker",
    "delayed": f"delayed {DELAY_MS[0]}–{DELAY_MS[1]} ms: start − due",
    "memory": f"memory per waiting job, {PAYLOAD_BYTES} B data",
}

Advance = Callable[[int], None]
"""Tells the progress bar how many of a workload's jobs are done."""


class BenchFailure(click.ClickException):
    """A measurement went wrong (a worker process died, jobs went missing): exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class Step:
    """One measurement: a workload, and for process-n how many worker processes run it."""

    key: str
    """The name of its result: the workload's, or `process-n-<P>p` for P > 1 processes."""
    workload: str
    processes: int = 1


@dataclass
class Plan:
    """What to measure, and where."""

    url: str
    jobs: int = 10_000
    concurrency: int = 50
    latency_jobs: int = 500
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    processes: tuple[int, ...] = (1,)
    temporary: bool = False
    workdir: Path = field(default_factory=Path)

    def steps(self) -> list[Step]:
        """The measurements in the order they run: process-n once per process count."""
        steps: list[Step] = []
        for name in self.workloads:
            if name == "process-n":
                steps += [Step(process_key(count), name, count) for count in self.processes]
            else:
                steps.append(Step(name, name))
        return steps

    def title(self, step: Step) -> str:
        """The measurement's line in the progress bar and the table."""
        title = WORKLOADS[step.workload].format(concurrency=self.concurrency)
        if step.workload == "process-n" and self.processes != (1,):
            title += f", {step.processes} process" + ("es" if step.processes > 1 else "")
        return title


def process_key(processes: int) -> str:
    """The result key of process-n run by `processes` worker processes."""
    return "process-n" if processes == 1 else f"process-n-{processes}p"


def wall() -> float:
    """Wall-clock seconds since the epoch, to the microsecond (comparable across processes)."""
    return SYSTEM.now().timestamp()


# -- the store's own costs -------------------------------------------------------------------


class Probe:
    """What the store spends beside the queue's own answers: server CPU, bytes in use."""

    measured = ""
    """What `bytes_used` reads, for the table."""

    def cpu_seconds(self) -> float | None:
        """CPU seconds the store's server has used so far (None: no server of its own)."""
        return None

    def cpu_per_job(self, before: float | None, jobs: int) -> dict[str, float]:
        """`redis_cpu_us_per_job` since `before` (an earlier `cpu_seconds`), or nothing."""
        after = self.cpu_seconds()
        if before is None or after is None:
            return {}
        return {"redis_cpu_us_per_job": (after - before) * 1e6 / jobs}

    def bytes_used(self) -> int:
        """Bytes the store's data takes now."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the probe holds."""


class RedisProbe(Probe):
    """INFO of the Redis server holding the bench queue, through a client of its own."""

    measured = "redis-server used_memory growth"

    def __init__(self, url: str) -> None:
        # The store's URL as redis-py takes it (corral's own parameters removed), so the
        # client reaches the very server the queue uses.
        self.client = Settings.parse(url, url_params(url)).sync_client()
        self.node: redis.cluster.ClusterNode | None = None
        if isinstance(self.client, redis.cluster.RedisCluster):
            # INFO goes to one node; the queue's keys share one slot, hence one node.
            prefix = queue_prefix(BENCH_QUEUE)
            self.node = self.client.get_node_from_key(prefix)  # type: ignore[no-untyped-call]

    def info(self, section: str) -> dict[str, Any]:
        """One INFO section of the server that holds the bench queue."""
        if self.node is not None:
            reply = self.client.info(section, target_nodes=self.node)
        else:
            reply = self.client.info(section)
        return dict(reply)

    def cpu_seconds(self) -> float | None:
        """used_cpu_sys + used_cpu_user of redis-server (None where INFO is refused)."""
        try:
            cpu = self.info("cpu")
        except redis.exceptions.ResponseError:  # e.g. an ACL without INFO
            return None
        return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])

    def bytes_used(self) -> int:
        """used_memory of redis-server."""
        try:
            memory = self.info("memory")
        except redis.exceptions.ResponseError as exc:
            raise BenchFailure(f"the memory workload needs INFO memory: {exc}") from None
        return int(memory["used_memory"])

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class SqliteProbe(Probe):
    """The database file: its pages in use and its WAL, read with a plain sqlite3 connection."""

    measured = "SQLite file growth: pages in use + WAL"

    def __init__(self, url: str) -> None:
        self.path = Path(sqlite_path(url))

    def bytes_used(self) -> int:
        """Bytes of the file's pages in use plus the WAL, after moving the WAL into the file."""
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            for _ in range(CHECKPOINT_TRIES):
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    break
                sleep_blocking(0.1)  # a reader or a checkpoint of the store's own is under way
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        return int((pages - free) * page_size) + (wal.stat().st_size if wal.exists() else 0)


def open_probe(url: str) -> Probe:
    """The probe of the store at `url`."""
    if urlsplit(url).scheme in SQLITE_SCHEMES:
        return SqliteProbe(url)
    return RedisProbe(url)


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of `values`, interpolated between the nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean of samples in milliseconds."""
    return {
        "p50_ms": percentile(samples_ms, 0.50),
        "p99_ms": percentile(samples_ms, 0.99),
        "max_ms": max(samples_ms),
        "mean_ms": sum(samples_ms) / len(samples_ms),
    }


def delays_ms(count: int) -> list[int]:
    """`count` delays spread evenly at random over DELAY_MS (the same list every run)."""
    pick = random.Random(count)
    return [pick.randint(*DELAY_MS) for _ in range(count)]


# -- the worker processes --------------------------------------------------------------------


def child_main(spec: dict[str, Any]) -> None:
    """A worker process of the benchmark: `burst` (process workloads) or `serve` (latency)."""
    out = Path(spec["out"])
    if spec["role"] == "burst":
        out.write_text(json.dumps(asyncio.run(_burst(spec))))
        return
    with out.open("a", buffering=1) as lines:
        asyncio.run(_serve(spec, lines))


async def _burst(spec: dict[str, Any]) -> dict[str, Any]:
    """Work the queue off: attempts run, the jobs' `i`, first start (None: none) and end."""
    first: list[float] = []
    seen: list[int] = []

    async def noop(job: Job) -> None:
        if not first:
            first.append(wall())
        seen.append(job.data["i"])

    worker = Worker(spec["queue"], noop, url=spec["url"], concurrency=spec["concurrency"])
    ran = await worker.run(burst=True)
    return {"ran": ran, "seen": seen, "first": first[0] if first else None, "end": wall()}


async def _serve(spec: dict[str, Any], out: TextIO) -> None:
    """Run jobs until SIGTERM; write one line per job: its name and start − stamp in ms."""
    async def record(job: Job) -> None:
        started = wall()
        if job.name == "delayed":
            due = job.run_at.timestamp() if job.run_at else started
        else:
            due = float(job.data["t"])
        out.write(f"{job.name} {(started - due) * 1000:.4f}\n")

    worker = Worker(spec["queue"], record, url=spec["url"], concurrency=spec["concurrency"])
    await worker.run(handle_signals=True)


class Child:
    """A worker process of ours, with its output in a log file."""

    def __init__(self, plan: Plan, role: str, concurrency: int, out: Path) -> None:
        spec = {"role": role, "url": plan.url, "queue": BENCH_QUEUE,
                "concurrency": concurrency, "out": str(out)}
        self.role = role
        self.out = out
        self.log = out.with_suffix(".log")
        self.spawned = wall()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "corral.cli", "bench", "--child", json.dumps(spec)],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def check(self) -> None:
        """Fail when the process exited with an error."""
        code = self.process.poll()
        if code:
            raise BenchFailure(f"the {self.role} worker process exited with status {code}: "
                               f"{self.last_words()}")

    def last_words(self) -> str:
        """The last line the process printed."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no output)"
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        """Ask the worker to close (SIGTERM), then kill it if it does not."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def lines_of(path: Path) -> list[str]:
    """The complete lines written so far to `path`."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


async def wait_for_lines(child: Child, count: int, advance: Advance | None = None) -> list[str]:
    """Wait until the serving child has written `count` lines; they."""
    seen, last_change = 0, monotonic()
    while True:
        lines = lines_of(child.out)
        if len(lines) >= count:
            return lines
        child.check()
        if child.process.poll() is not None:
            raise BenchFailure(f"the worker process stopped after {len(lines)} of {count} jobs")
        if len(lines) != seen:
            seen, last_change = len(lines), monotonic()
            if advance:
                advance(seen)
        elif monotonic() - last_change > CHILD_TIMEOUT:
            raise BenchFailure(f"the worker ran {len(lines)} of {count} jobs, then nothing for "
                               f"{CHILD_TIMEOUT:.0f} s")
        await asyncio.sleep(0.01)


# -- the workloads ---------------------------------------------------------------------------


def noop_data(i: int) -> dict[str, Any]:
    """The data of the i-th noop job."""
    return {"i": i}


def padded_data(i: int) -> dict[str, Any]:
    """The data of the i-th job of the memory workload: exactly PAYLOAD_BYTES of JSON."""
    data: dict[str, Any] = {"i": i, "pad": ""}
    data["pad"] = "x" * (PAYLOAD_BYTES - len(orjson.dumps(data)))
    assert len(orjson.dumps(data)) == PAYLOAD_BYTES, data
    return data


async def add_in_chunks(
    queue: Queue, jobs: int, advance: Advance | None = None,
    data: Callable[[int], dict[str, Any]] = noop_data,
) -> None:
    """Add `jobs` jobs named noop with `add_bulk`, CHUNK at a time, the i-th with data(i)."""
    for first in range(0, jobs, CHUNK):
        count = min(CHUNK, jobs - first)
        await queue.add_bulk([JobSpec("noop", data(first + i)) for i in range(count)])
        if advance:
            advance(first + count)


async def expect_waiting(queue: Queue, jobs: int) -> None:
    """Fail unless exactly `jobs` jobs are waiting."""
    waiting = (await queue.counts())["waiting"]
    if waiting != jobs:
        raise BenchFailure(f"expected {jobs} waiting jobs after adding them, found {waiting}")


async def bench_add(queue: Queue, plan: Plan, probe: Probe, advance: Advance) -> dict[str, Any]:
    """Jobs/s for one awaited `add` after another."""
    await queue.add("warmup", {"i": -1})  # the first call opens the store: not timed
    await queue.obliterate(force=True)
    cpu = probe.cpu_seconds()
    started = monotonic()
    for i in range(plan.jobs):
        await queue.add("noop", {"i": i})
        if i % PROGRESS_STEP == 0:
            advance(i)
    seconds = monotonic() - started
    server = probe.cpu_per_job(cpu, plan.jobs)
    await expect_waiting(queue, plan.jobs)
    return {"jobs": plan.jobs, "seconds": seconds, "jobs_per_s": plan.jobs / seconds, **server}


async def bench_add_bulk(
    queue: Queue, plan: Plan, probe: Probe, advance: Advance
) -> dict[str, Any]:
    """Jobs/s for `add_bulk` in chunks of CHUNK."""
    await queue.add_bulk([JobSpec("warmup", {"i": -1})])
    await queue.obliterate(force=True)
    cpu = probe.cpu_seconds()
    started = monotonic()
    await add_in_chunks(queue, plan.jobs, advance)
    seconds = monotonic() - started
    server = probe.cpu_per_job(cpu, plan.jobs)
    await expect_waiting(queue, plan.jobs)
    return {"jobs": plan.jobs, "chunk": CHUNK, "seconds": seconds,
            "jobs_per_s": plan.jobs / seconds, **server}


async def bench_process(
    queue: Queue, plan: Plan, probe: Probe, concurrency: int, processes: int, advance: Advance
) -> dict[str, Any]:
    """Jobs/s of worker processes at `concurrency`, earliest first start to last return."""
    await add_in_chunks(queue, plan.jobs)
    await expect_waiting(queue, plan.jobs)
    cpu = probe.cpu_seconds()  # after the adds: their cost is not the workers'
    children = [
        Child(plan, "burst", concurrency, plan.workdir / f"process-{concurrency}-{k}.json")
        for k in range(processes)
    ]
    try:
        while any(child.process.poll() is None for child in children):
            await asyncio.sleep(POLL)
            advance(plan.jobs - (await queue.counts())["waiting"])
            for child in children:
                child.check()
        for child in children:
            child.check()
    finally:
        for child in children:
            child.stop()
    server = probe.cpu_per_job(cpu, plan.jobs)
    results = [json.loads(child.out.read_text()) for child in children]
    ran = [result["ran"] for result in results]
    seen = sorted(i for result in results for i in result["seen"])
    counts = await queue.counts()
    if (sum(ran) != plan.jobs or seen != list(range(plan.jobs))
            or counts["waiting"] or counts["active"] or counts["failed"]):
        raise BenchFailure(
            f"the worker processes ran {' + '.join(map(str, ran))} of {plan.jobs} jobs, "
            f"{len(seen) - len(set(seen))} of them twice; left: {counts}"
        )
    # A process that found the queue empty ran nothing: its start-up is not the others'.
    working = [result for result in results if result["ran"]]
    first = min(result["first"] for result in working)
    seconds = max(result["end"] for result in working) - first
    out = {"jobs": plan.jobs, "concurrency": concurrency, "processes": processes,
           "seconds": seconds, "jobs_per_s": plan.jobs / seconds,
           "startup_s": first - min(child.spawned for child in children), **server}
    if processes > 1:
        out["ran_per_process"] = ran
    return out


@contextlib.asynccontextmanager
async def idle_worker(queue: Queue, plan: Plan, name: str) -> AsyncIterator[Child]:
    """A serving worker process (concurrency 1), warmed up with one job and then idle."""
    out = plan.workdir / f"{name}.txt"
    child = Child(plan, "serve", 1, out)
    try:
        await queue.add("warmup", {"t": wall()})
        await wait_for_lines(child, 1)
        await asyncio.sleep(SETTLE)
        yield child
    finally:
        child.stop()


async def spaced(count: int, add: Callable[[int], Awaitable[None]], advance: Advance) -> None:
    """Call `add(i)` for i in range(count), SPACING seconds apart on a fixed schedule."""
    started = monotonic()
    for i in range(count):
        pause = started + i * SPACING - monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        await add(i)
        if i % 10 == 0:
            advance(i)


def samples(lines: list[str], name: str) -> list[float]:
    """The milliseconds the serving worker noted for jobs called `name`."""
    return [float(value) for kind, value in (line.split() for line in lines) if kind == name]


async def bench_latency(queue: Queue, plan: Plan, advance: Advance) -> dict[str, Any]:
    """add→start latency with an idle worker in another process."""
    count = plan.latency_jobs
    async with idle_worker(queue, plan, "latency") as child:
        async def add(i: int) -> None:
            await queue.add("probe", {"i": i, "t": wall()})

        await spaced(count, add, advance)
        lines = await wait_for_lines(child, count + 1)
    return {"jobs": count, "spacing_ms": SPACING * 1000, **spread(samples(lines, "probe"))}


async def bench_delayed(queue: Queue, plan: Plan, advance: Advance) -> dict[str, Any]:
    """How late delayed jobs start after their due time, with a worker in another process."""
    count = plan.latency_jobs
    delays = delays_ms(count)
    async with idle_worker(queue, plan, "delayed") as child:
        async def add(i: int) -> None:
            await queue.add("delayed", {"i": i}, delay=delays[i] / 1000)

        await spaced(count, add, advance)
        lines = await wait_for_lines(child, count + 1)
    late = samples(lines, "delayed")
    return {"jobs": count, "delay_ms": list(DELAY_MS), **spread(late),
            "min_ms": min(late), "early": sum(1 for ms in late if ms < 0)}


async def bench_memory(
    queue: Queue, plan: Plan, probe: Probe, advance: Advance
) -> dict[str, Any]:
    """Bytes of store per waiting job with PAYLOAD_BYTES of JSON data."""
    # The warm-up loads the scripts and creates what the queue keeps while empty, so the
    # growth below is the jobs' alone.
    await queue.add_bulk([JobSpec("warmup", padded_data(-1))])
    await queue.obliterate(force=True)
    before = probe.bytes_used()
    await add_in_chunks(queue, plan.jobs, advance, padded_data)
    grown = probe.bytes_used() - before
    await expect_waiting(queue, plan.jobs)
    return {"jobs": plan.jobs, "payload_bytes": PAYLOAD_BYTES,
            "bytes_per_job": grown / plan.jobs, "measured": probe.measured}


# -- running them ----------------------------------------------------------------------------


class Bar:
    """The progress bar on stderr: one line per measurement (quiet when stderr is no terminal)."""

    def __init__(self, plan: Plan) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )
        self.tasks: dict[str, TaskID] = {}
        for step in plan.steps():
            timed = step.workload in ("latency", "delayed")
            total = plan.latency_jobs if timed else plan.jobs
            self.tasks[step.key] = self.progress.add_task(plan.title(step), total=total,
                                                          start=False)

    @contextlib.contextmanager
    def running(self, step: Step) -> Iterator[Advance]:
        """Start the measurement's bar; yields the function that moves it."""
        task = self.tasks[step.key]
        self.progress.start_task(task)

        def advance(done: int) -> None:
            self.progress.update(task, completed=done)

        yield advance
        self.progress.update(task, completed=self.progress.tasks[task].total)
        self.progress.stop_task(task)


async def measure(plan: Plan) -> dict[str, Any]:
    """Run the plan's measurements in order; the results by key."""
    queue = Queue(BENCH_QUEUE, url=plan.url)
    results: dict[str, Any] = {}
    bar = Bar(plan)
    probe: Probe | None = None
    try:
        await queue.obliterate(force=True)  # also the first contact: a bad store fails here
        probe = open_probe(plan.url)
        with bar.progress:
            for step in plan.steps():
                with bar.running(step) as advance:
                    results[step.key] = await run_workload(queue, plan, probe, step, advance)
                await queue.obliterate(force=True)
    finally:
        with contextlib.suppress(Exception):
            await queue.obliterate(force=True)
        await queue.close()
        if probe is not None:
            probe.close()
    return results


async def run_workload(
    queue: Queue, plan: Plan, probe: Probe, step: Step, advance: Advance
) -> dict[str, Any]:
    """One measurement."""
    name = step.workload
    if name == "add":
        return await bench_add(queue, plan, probe, advance)
    if name == "add-bulk":
        return await bench_add_bulk(queue, plan, probe, advance)
    if name == "process-1":
        return await bench_process(queue, plan, probe, 1, 1, advance)
    if name == "process-n":
        return await bench_process(queue, plan, probe, plan.concurrency, step.processes, advance)
    if name == "latency":
        return await bench_latency(queue, plan, advance)
    if name == "memory":
        return await bench_memory(queue, plan, probe, advance)
    return await bench_delayed(queue, plan, advance)


def report(plan: Plan, results: dict[str, Any]) -> dict[str, Any]:
    """Everything about the run, as one JSON-ready object."""
    return {
        "corral": __version__,
        "store": "sqlite" if urlsplit(plan.url).scheme in SQLITE_SCHEMES else "redis",
        "url": "temporary SQLite file" if plan.temporary else redact(plan.url),
        "queue": BENCH_QUEUE,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "jobs": plan.jobs,
        "concurrency": plan.concurrency,
        "processes": list(plan.processes),
        "latency_jobs": plan.latency_jobs,
        "results": results,
    }


def row(result: dict[str, Any]) -> tuple[str, str]:
    """The result and detail cells of one measurement."""
    if "bytes_per_job" in result:
        return (f"{result['bytes_per_job']:,.0f} B/job",
                f"{result['jobs']:,} waiting jobs, {result['payload_bytes']} B of JSON data each; "
                f"{result['measured']}")
    if "jobs_per_s" not in result:
        detail = f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms"
        if "early" in result:
            detail += f", {result['early']} of {result['jobs']} early"
        else:
            detail += f", {result['jobs']} jobs {result['spacing_ms']:.0f} ms apart"
        return f"p50 {result['p50_ms']:.2f} ms", detail
    detail = f"{result['jobs']:,} jobs in {result['seconds']:.2f} s"
    if "ran_per_process" in result:
        detail += f" ({' + '.join(f'{ran:,}' for ran in result['ran_per_process'])})"
    if "startup_s" in result:
        detail += f"; worker start-up {result['startup_s']:.2f} s (not timed)"
    if "redis_cpu_us_per_job" in result:
        detail += f"; redis-server CPU {result['redis_cpu_us_per_job']:.1f} µs/job"
    return f"{result['jobs_per_s']:,.0f} jobs/s", detail


def table(plan: Plan, summary: dict[str, Any]) -> Table:
    """The results as a table for people."""
    out = Table(
        title=(f"corral {summary['corral']} on {summary['store']} ({summary['url']}), "
               f"Python {summary['python']}, {summary['cpus']} CPUs"),
        title_justify="left",
    )
    out.add_column("workload")
    out.add_column("result", justify="right")
    out.add_column("detail")
    titles = {step.key: plan.title(step) for step in plan.steps()}
    for key, result in summary["results"].items():
        out.add_row(titles[key], *row(result))
    return out


# -- the command -----------------------------------------------------------------------------


def parse_only(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """`--only add --only latency,delayed` → the workloads, in the order they run."""
    chosen = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(chosen - set(WORKLOADS))
    if unknown:
        raise click.BadParameter(
            f"unknown workload {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(WORKLOADS)}", ctx=ctx, param=param,
        )
    return tuple(name for name in WORKLOADS if name in chosen) if chosen else tuple(WORKLOADS)


def parse_processes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """`--processes 1,2,4` → the worker process counts of process-n, smallest first."""
    counts: set[int] = set()
    for part in value.split(","):
        try:
            count = int(part.strip())
        except ValueError:
            raise click.BadParameter(
                f"{part.strip()!r} is not a number of processes: give counts like 1,2,4",
                ctx=ctx, param=param,
            ) from None
        if count < 1:
            raise click.BadParameter(f"{count} processes: each count must be at least 1",
                                     ctx=ctx, param=param)
        counts.add(count)
    return tuple(sorted(counts))


@click.command()
@click.option("--url", metavar="URL",
              help="Store to measure, on its queue corral-bench (emptied before and after) "
                   "[default: a temporary SQLite file]. CORRAL_URL is not read.")
@click.option("--jobs", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Jobs per throughput workload.")
@click.option("--concurrency", default=50, show_default=True, type=click.IntRange(min=1),
              help="Worker concurrency of the process-n workload.")
@click.option("--processes", default="1", show_default=True, metavar="COUNTS",
              callback=parse_processes,
              help="Worker processes of the process-n workload, run once per count "
                   "(comma-separated, e.g. 1,2,4).")
@click.option("--latency-jobs", default=500, show_default=True, type=click.IntRange(min=1),
              help="Jobs of the latency and delayed workloads.")
@click.option("--only", multiple=True, metavar="WORKLOAD", callback=parse_only,
              help=f"Run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--child", hidden=True)  # set on the worker processes the benchmark starts
def bench(
    url: str | None, jobs: int, concurrency: int, processes: tuple[int, ...],
    latency_jobs: int, only: tuple[str, ...], as_json: bool, child: str | None,
) -> None:
    """Measure how fast a store adds, runs and schedules jobs, on this machine.

    Workloads: add (one by one), add-bulk (1000 per call), process-1 and process-n (noop jobs,
    worker processes at concurrency 1 and --concurrency; process-n once per --processes
    count), latency (add→start with an idle worker in another process), delayed (how late
    jobs delayed 50–500 ms start) and memory (bytes of store per waiting job). On Redis the
    throughput workloads also report redis-server CPU per job.
    """
    if child is not None:
        child_main(json.loads(child))
        return
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        plan = Plan(
            url=resolve_url(url) if url is not None else f"sqlite:///{workdir / 'bench.db'}",
            jobs=jobs, concurrency=concurrency, latency_jobs=latency_jobs, workloads=only,
            processes=processes, temporary=url is None, workdir=workdir,
        )
        announce(plan.url + (" (temporary)" if plan.temporary else ""))
        summary = report(plan, run(measure(plan)))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        stdout().print(table(plan, summary))
