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
- `latency`: an idle worker in another process; jobs are added one at a time, 5 ms apart,
  each carrying the wall time just before its `add`; the processor notes its start time
  minus that stamp (add→start: p50, p99, max in ms).
- `delayed`: jobs added 5 ms apart with delays spread over 50–500 ms; the processor notes how
  long after its due time (`job.run_at`) each one started: p50, p99, max, and how many
  started early (there should be none).

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
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import click
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
from corral.backends import redact, resolve_url
from corral.clock import SYSTEM, monotonic
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

WORKLOADS: dict[str, str] = {
    "add": "add, one by one",
    "add-bulk": f"add_bulk, chunks of {CHUNK}",
    "process-1": "process noop, concurrency 1",
    "process-n": "process noop, concurrency {concurrency}",
    "latency": "add→start latency, idle worker",
    "delayed": f"delayed {DELAY_MS[0]}–{DELAY_MS[1]} ms: start − due",
}

Advance = Callable[[int], None]
"""Tells the progress bar how many of a workload's jobs are done."""


class BenchFailure(click.ClickException):
    """A measurement went wrong (a worker process died, jobs went missing): exit status 1."""

    exit_code = 1


@dataclass
class Plan:
    """What to measure, and where."""

    url: str
    jobs: int = 10_000
    concurrency: int = 50
    latency_jobs: int = 500
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    temporary: bool = False
    workdir: Path = field(default_factory=Path)

    def title(self, workload: str) -> str:
        """The workload's line in the progress bar and the table."""
        return WORKLOADS[workload].format(concurrency=self.concurrency)


def wall() -> float:
    """Wall-clock seconds since the epoch, to the microsecond (comparable across processes)."""
    return SYSTEM.now().timestamp()


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
    """Work the queue off: attempts run, first start and end (wall seconds)."""
    first: list[float] = []

    async def noop(job: Job) -> None:
        if not first:
            first.append(wall())

    worker = Worker(spec["queue"], noop, url=spec["url"], concurrency=spec["concurrency"])
    ran = await worker.run(burst=True)
    end = wall()
    return {"ran": ran, "first": first[0] if first else end, "end": end}


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
        self.log = plan.workdir / f"{role}-{concurrency}.log"
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


async def add_in_chunks(queue: Queue, jobs: int, advance: Advance | None = None) -> None:
    """Add `jobs` noop jobs with `add_bulk`, CHUNK at a time."""
    for first in range(0, jobs, CHUNK):
        count = min(CHUNK, jobs - first)
        await queue.add_bulk([JobSpec("noop", {"i": first + i}) for i in range(count)])
        if advance:
            advance(first + count)


async def expect_waiting(queue: Queue, jobs: int) -> None:
    """Fail unless exactly `jobs` jobs are waiting."""
    waiting = (await queue.counts())["waiting"]
    if waiting != jobs:
        raise BenchFailure(f"expected {jobs} waiting jobs after adding them, found {waiting}")


async def bench_add(queue: Queue, plan: Plan, advance: Advance) -> dict[str, Any]:
    """Jobs/s for one awaited `add` after another."""
    await queue.add("warmup", {"i": -1})  # the first call opens the store: not timed
    await queue.obliterate(force=True)
    started = monotonic()
    for i in range(plan.jobs):
        await queue.add("noop", {"i": i})
        if i % PROGRESS_STEP == 0:
            advance(i)
    seconds = monotonic() - started
    await expect_waiting(queue, plan.jobs)
    return {"jobs": plan.jobs, "seconds": seconds, "jobs_per_s": plan.jobs / seconds}


async def bench_add_bulk(queue: Queue, plan: Plan, advance: Advance) -> dict[str, Any]:
    """Jobs/s for `add_bulk` in chunks of CHUNK."""
    await queue.add_bulk([JobSpec("warmup", {"i": -1})])
    await queue.obliterate(force=True)
    started = monotonic()
    await add_in_chunks(queue, plan.jobs, advance)
    seconds = monotonic() - started
    await expect_waiting(queue, plan.jobs)
    return {"jobs": plan.jobs, "chunk": CHUNK, "seconds": seconds,
            "jobs_per_s": plan.jobs / seconds}


async def bench_process(
    queue: Queue, plan: Plan, concurrency: int, advance: Advance
) -> dict[str, Any]:
    """Jobs/s of one worker process at `concurrency`, first start to last acknowledgement."""
    await add_in_chunks(queue, plan.jobs)
    await expect_waiting(queue, plan.jobs)
    out = plan.workdir / f"process-{concurrency}.json"
    child = Child(plan, "burst", concurrency, out)
    try:
        while child.process.poll() is None:
            await asyncio.sleep(POLL)
            advance(plan.jobs - (await queue.counts())["waiting"])
        child.check()
    finally:
        child.stop()
    result = json.loads(out.read_text())
    counts = await queue.counts()
    if result["ran"] != plan.jobs or counts["waiting"] or counts["active"] or counts["failed"]:
        raise BenchFailure(f"the worker ran {result['ran']} of {plan.jobs} jobs; left: {counts}")
    seconds = result["end"] - result["first"]
    return {"jobs": plan.jobs, "concurrency": concurrency, "seconds": seconds,
            "jobs_per_s": plan.jobs / seconds, "startup_s": result["first"] - child.spawned}


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


# -- running them ----------------------------------------------------------------------------


class Bar:
    """The progress bar on stderr: one line per workload (quiet when stderr is no terminal)."""

    def __init__(self, plan: Plan) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )
        self.tasks: dict[str, TaskID] = {}
        for name in plan.workloads:
            total = plan.latency_jobs if name in ("latency", "delayed") else plan.jobs
            self.tasks[name] = self.progress.add_task(plan.title(name), total=total, start=False)

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[Advance]:
        """Start the workload's bar; yields the function that moves it."""
        task = self.tasks[name]
        self.progress.start_task(task)

        def advance(done: int) -> None:
            self.progress.update(task, completed=done)

        yield advance
        self.progress.update(task, completed=self.progress.tasks[task].total)
        self.progress.stop_task(task)


async def measure(plan: Plan) -> dict[str, Any]:
    """Run the plan's workloads in order; the results by workload."""
    queue = Queue(BENCH_QUEUE, url=plan.url)
    results: dict[str, Any] = {}
    bar = Bar(plan)
    try:
        await queue.obliterate(force=True)  # also the first contact: a bad store fails here
        with bar.progress:
            for name in plan.workloads:
                with bar.running(name) as advance:
                    results[name] = await run_workload(queue, plan, name, advance)
                await queue.obliterate(force=True)
    finally:
        with contextlib.suppress(Exception):
            await queue.obliterate(force=True)
        await queue.close()
    return results


async def run_workload(queue: Queue, plan: Plan, name: str, advance: Advance) -> dict[str, Any]:
    """One workload's measurement."""
    if name == "add":
        return await bench_add(queue, plan, advance)
    if name == "add-bulk":
        return await bench_add_bulk(queue, plan, advance)
    if name == "process-1":
        return await bench_process(queue, plan, 1, advance)
    if name == "process-n":
        return await bench_process(queue, plan, plan.concurrency, advance)
    if name == "latency":
        return await bench_latency(queue, plan, advance)
    return await bench_delayed(queue, plan, advance)


def report(plan: Plan, results: dict[str, Any]) -> dict[str, Any]:
    """Everything about the run, as one JSON-ready object."""
    return {
        "corral": __version__,
        "store": "sqlite" if urlsplit(plan.url).scheme == "sqlite" else "redis",
        "url": "temporary SQLite file" if plan.temporary else redact(plan.url),
        "queue": BENCH_QUEUE,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "jobs": plan.jobs,
        "concurrency": plan.concurrency,
        "latency_jobs": plan.latency_jobs,
        "results": results,
    }


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
    for name, result in summary["results"].items():
        if "jobs_per_s" in result:
            value = f"{result['jobs_per_s']:,.0f} jobs/s"
            detail = f"{result['jobs']:,} jobs in {result['seconds']:.2f} s"
            if "startup_s" in result:
                detail += f"; worker start-up {result['startup_s']:.2f} s (not timed)"
        else:
            value = f"p50 {result['p50_ms']:.2f} ms"
            detail = f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms"
            if "early" in result:
                detail += f", {result['early']} of {result['jobs']} early"
            else:
                detail += f", {result['jobs']} jobs {result['spacing_ms']:.0f} ms apart"
        out.add_row(plan.title(name), value, detail)
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


@click.command()
@click.option("--url", metavar="URL",
              help="Store to measure, on its queue corral-bench (emptied before and after) "
                   "[default: a temporary SQLite file]. CORRAL_URL is not read.")
@click.option("--jobs", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Jobs per throughput workload.")
@click.option("--concurrency", default=50, show_default=True, type=click.IntRange(min=1),
              help="Worker concurrency of the process-n workload.")
@click.option("--latency-jobs", default=500, show_default=True, type=click.IntRange(min=1),
              help="Jobs of the latency and delayed workloads.")
@click.option("--only", multiple=True, metavar="WORKLOAD", callback=parse_only,
              help=f"Run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--child", hidden=True)  # set on the worker processes the benchmark starts
def bench(
    url: str | None, jobs: int, concurrency: int, latency_jobs: int, only: tuple[str, ...],
    as_json: bool, child: str | None,
) -> None:
    """Measure how fast a store adds, runs and schedules jobs, on this machine.

    Workloads: add (one by one), add-bulk (1000 per call), process-1 and process-n (noop jobs,
    one worker process at concurrency 1 and --concurrency), latency (add→start with an idle
    worker in another process) and delayed (how late jobs delayed 50–500 ms start).
    """
    if child is not None:
        child_main(json.loads(child))
        return
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        plan = Plan(
            url=resolve_url(url) if url is not None else f"sqlite:///{workdir / 'bench.db'}",
            jobs=jobs, concurrency=concurrency, latency_jobs=latency_jobs, workloads=only,
            temporary=url is None, workdir=workdir,
        )
        announce(plan.url + (" (temporary)" if plan.temporary else ""))
        summary = report(plan, run(measure(plan)))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        stdout().print(table(plan, summary))
