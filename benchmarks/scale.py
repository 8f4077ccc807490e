"""Whether corral's cost per job stays flat as a queue grows from 1,000 to 1,000,000 jobs.

For each fill level S, in increasing order, the queue `corral-scale` grows (it is never
refilled from zero) to S waiting jobs and S jobs delayed by a day, through `add_bulk` in
chunks of 1000; then, at that level:

- add: `--sample` jobs through `Queue.add`, each call awaited before the next (µs per job,
  from the median of four rounds);
- add_bulk: `--sample` more through `add_bulk`, 1000 per call (µs per job);
- process: a Worker in this process (concurrency 50, a noop processor) runs exactly those
  2 × sample jobs, timed from the first start to the last acknowledgement (µs per job).
  They were added at priority -1, and the lowest number runs first, so they pass the
  backlog and the level is S again once they are done; the few backlog jobs the worker
  takes in its last round are added again afterwards.
- delayed: `--probes` jobs delayed 200 ms, added 5 ms apart at priority -1 while a worker
  runs: how long after its due time each one starts (p50, p99 ms; none may start early).
  A running worker never idles beside a backlog, so this one works the backlog off
  meanwhile and adds each backlog job again as it runs it: the level holds at S, and at
  every level each probe is promoted and claimed past an equally busy worker.
- store: on Redis, the server's CPU (`INFO cpu`, user + sys) per job of add, add_bulk and
  process, and its memory (`INFO memory`, used_memory) per waiting job and per delayed job
  (what each fill added) and per queued job (above the empty queue); on SQLite, the bytes
  of pages in use per waiting and per delayed job, and the size of the file and its WAL
  per queued job.
- fill: what growing the backlog cost per waiting and per delayed job.

A last line divides each cost at the largest level by the same cost at the smallest: flat
is near 1. The table's caption says how long removing the largest level took. The JSON
output (`--json`) also has this process's CPU per job of each step.

Usage: python -m benchmarks.scale [--url URL] [--sizes 1000,10000,100000,1000000 | --quick]
           [--sample 2000] [--probes 1000] [--concurrency 50] [--json]
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import redis.asyncio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from corral import __version__
from corral.backends import redact, resolve_url, sqlite_path
from corral.cli.bench import (
    CHILD_TIMEOUT,
    CHUNK,
    Advance,
    BenchFailure,
    spaced,
    spread,
    wall,
)
from corral.cli.common import run, stdout
from corral.clock import monotonic
from corral.job import Job
from corral.options import JobSpec
from corral.queue import Queue
from corral.worker import Worker

SCALE_QUEUE = "corral-scale"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000)
BACKLOG, LATER, SAMPLE, PROBE = "backlog", "later", "sample", "probe"  # job names
FAR = 86_400.0  # seconds: the delayed backlog must stay delayed for the whole run
URGENT = -1  # measured jobs go ahead of the backlog (priority 0)
PROBE_DELAY = 0.2  # seconds
# Past the default retention (1000 completed), so every level trims alike, and enough for
# SQLite's WAL to reach its working size: a WAL still growing slows the first level.
WARMUP_JOBS = 5_000
WARMUP_PROBES = 20
ROUNDS = 4  # of the add step
POLL = 0.1  # seconds between two looks at a worker's progress (its events wake us earlier)
REDIS_INFO_SCHEMES = frozenset({"redis", "rediss", "unix"})


def ignore(done: int) -> None:
    """A progress callback for steps nobody watches."""


@dataclass
class Plan:
    """What to measure, and where."""

    url: str
    sizes: tuple[int, ...] = SIZES
    sample: int = 2_000
    probes: int = 1_000
    concurrency: int = 50
    temporary: bool = False


# -- what the store spends -------------------------------------------------------------------


def pages_in_use(path: str) -> int:
    """Bytes of the SQLite database's pages that hold data (its WAL included, free pages not)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        pages, free, size = (
            int(conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count", "page_size")
        )
    return (pages - free) * size


class Gauge:
    """What the store itself spends: the Redis server's CPU and memory, or SQLite's file."""

    def __init__(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        self.path = sqlite_path(url) if store_of(url) == "sqlite" else None
        # Sentinel and cluster URLs name no single server whose INFO is the queue's; corral's
        # own URL parameters mean nothing to a plain client.
        self.client = (
            redis.asyncio.Redis.from_url(url.split("?", 1)[0])
            if scheme in REDIS_INFO_SCHEMES else None
        )

    async def cpu(self) -> float | None:
        """The Redis server's CPU seconds so far (user + sys); None without one."""
        if self.client is None:
            return None
        info = await self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def used(self) -> int | None:
        """Bytes the store holds: Redis used_memory, or SQLite's pages in use."""
        if self.client is not None:
            info = await self.client.info("memory")
            return int(info["used_memory"])
        if self.path is not None:
            return await asyncio.to_thread(pages_in_use, self.path)
        return None

    def files(self) -> int | None:
        """Bytes of the SQLite file and its WAL on disk; None on Redis."""
        if self.path is None:
            return None
        sizes = (os.path.getsize(p) for p in (self.path, f"{self.path}-wal") if os.path.exists(p))
        return sum(sizes)

    async def close(self) -> None:
        """Drop the INFO connection."""
        if self.client is not None:
            await self.client.aclose()


@dataclass
class Cost:
    """One measured step: its jobs, its time, and the CPU the store and this process spent."""

    jobs: int
    seconds: float
    store_cpu: float | None
    client_cpu: float

    def metrics(self, name: str) -> dict[str, float | None]:
        """Microseconds per job, of time and of each CPU."""
        per_job = 1e6 / self.jobs
        return {
            f"{name}_us": self.seconds * per_job,
            f"{name}_store_cpu_us": None if self.store_cpu is None else self.store_cpu * per_job,
            f"{name}_client_cpu_us": self.client_cpu * per_job,
        }


async def measured(
    gauge: Gauge, jobs: int, work: Callable[[], Awaitable[float | None]]
) -> Cost:
    """Run `work`: the seconds it reports (else its wall time), and the CPU spent meanwhile."""
    store_before = await gauge.cpu()
    client_before = time.process_time()
    started = monotonic()
    timed = await work()
    seconds = monotonic() - started if timed is None else timed
    client_cpu = time.process_time() - client_before
    store_after = await gauge.cpu()
    store_cpu = (
        None if store_before is None or store_after is None else store_after - store_before
    )
    return Cost(jobs, seconds, store_cpu, client_cpu)


# -- the steps -------------------------------------------------------------------------------


async def add_chunks(
    queue: Queue, name: str, first: int, last: int, advance: Advance, **options: Any
) -> None:
    """Add jobs `name` numbered first..last-1 through `add_bulk`, CHUNK at a time."""
    for start in range(first, last, CHUNK):
        end = min(start + CHUNK, last)
        await queue.add_bulk([JobSpec(name, {"i": i}, **options) for i in range(start, end)])
        advance(end - first)


async def add_one_by_one(queue: Queue, jobs: int, advance: Advance) -> float:
    """Add urgent sample jobs through `Queue.add`, each awaited before the next, in ROUNDS
    rounds: the seconds of the median round, scaled to all the jobs. A single add costs so
    little that one WAL checkpoint or scheduling hiccup would otherwise decide a level."""
    rounds = min(ROUNDS, jobs)
    bounds = [jobs * r // rounds for r in range(rounds + 1)]
    per_job: list[float] = []
    for low, high in itertools.pairwise(bounds):
        started = monotonic()
        for i in range(low, high):
            await queue.add(SAMPLE, {"i": i}, priority=URGENT)
        per_job.append((monotonic() - started) / (high - low))
        advance(high)
    return statistics.median(per_job) * jobs


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[int]]:
    """The worker running in a task of this loop; closed (and its jobs settled) on exit."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        await worker.close()
        await task


async def until(
    enough: asyncio.Event, done: Callable[[], int], target: int, task: asyncio.Task[int],
    advance: Advance,
) -> None:
    """Wait for `enough`; fail when the worker stops first or makes no progress for long."""
    seen, since = -1, monotonic()
    while not enough.is_set():
        if task.done():
            task.result()  # its error, if it died of one
            raise BenchFailure(f"the worker stopped after {done()} of {target} jobs")
        count = done()
        if count != seen:
            seen, since = count, monotonic()
            advance(count)
        elif monotonic() - since > CHILD_TIMEOUT:
            raise BenchFailure(f"the worker ran {count} of {target} jobs, then nothing for "
                               f"{CHILD_TIMEOUT:.0f} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), POLL)


async def process_sample(queue: Queue, plan: Plan, jobs: int, advance: Advance) -> float:
    """Run the `jobs` urgent jobs with a worker in this process; seconds from the first
    start to the last acknowledgement. Backlog jobs it takes at the end are added again."""
    first: list[float] = []
    last: list[float] = []
    backlog = 0
    enough = asyncio.Event()

    async def noop(job: Job) -> None:
        if not first:
            first.append(monotonic())

    def completed(job: Job, value: object) -> None:
        nonlocal backlog
        if job.name != SAMPLE:
            backlog += 1
            return
        last.append(monotonic())
        if len(last) == jobs:
            enough.set()  # every further claim takes a backlog job: stop now

    worker = Worker(SCALE_QUEUE, noop, url=plan.url, concurrency=plan.concurrency)
    worker.on("completed", completed)
    async with running(worker) as task:
        await until(enough, lambda: len(last), jobs, task, advance)
    await add_chunks(queue, BACKLOG, 0, backlog, ignore)
    return last[-1] - first[0]


async def probe_delayed(
    queue: Queue, plan: Plan, probes: int, advance: Advance
) -> list[float]:
    """How late (ms) jobs delayed PROBE_DELAY start, added as `corral bench` spaces them
    (5 ms apart), while a worker runs."""
    late_ms: list[float] = []
    enough = asyncio.Event()

    async def probe(job: Job) -> None:
        started = wall()
        due = job.run_at.timestamp() if job.run_at else started
        late_ms.append((started - due) * 1000)
        if len(late_ms) == probes:
            enough.set()

    async def again(job: Job) -> None:
        # Giving each backlog job back keeps the level at S while the worker is busy; through
        # the worker's own connection, as a processor adding a follow-up job would, so that
        # on SQLite it does not wait for this process's other connection to the file.
        await job.queue.add(BACKLOG, job.data)

    async def add(i: int) -> None:
        await queue.add(PROBE, {"i": i}, delay=PROBE_DELAY, priority=URGENT)

    worker = Worker(SCALE_QUEUE, {PROBE: probe, BACKLOG: again}, url=plan.url,
                    concurrency=plan.concurrency)
    async with running(worker) as task:
        await spaced(probes, add, ignore)
        await until(enough, lambda: len(late_ms), probes, task, advance)
    return late_ms


async def expect_level(queue: Queue, size: int) -> None:
    """Fail unless the queue holds exactly `size` waiting and `size` delayed jobs, and no
    other job is active or failed."""
    counts = await queue.counts()
    if (counts["waiting"], counts["delayed"], counts["active"], counts["failed"]) != (
        size, size, 0, 0
    ):
        raise BenchFailure(f"expected {size:,} waiting and delayed jobs, found {counts}")


# -- one level -------------------------------------------------------------------------------


class Bar:
    """One progress line on stderr, reused by every step (plain lines when not a terminal)."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self.quiet = not console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True, disable=self.quiet,
        )
        self.task = self.progress.add_task("", total=1, start=False)

    @contextlib.contextmanager
    def step(self, description: str, total: int) -> Iterator[Advance]:
        """Show a step; yields the function that moves it."""
        if self.quiet:
            # A long run written to a log still says where it is.
            click.echo(f"scale: {description} ({total:,} jobs)", err=True)
        self.progress.reset(self.task, total=total, description=description, start=True)

        def advance(done: int) -> None:
            self.progress.update(self.task, completed=done)

        yield advance
        self.progress.update(self.task, completed=total)


@dataclass
class Level:
    """Where the previous level left the queue, and what the empty queue held."""

    size: int = 0
    base_used: int | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


def per_job(delta: int | None, jobs: int) -> float | None:
    """Bytes per job, when the store reports bytes."""
    return None if delta is None else delta / jobs


async def grow(
    queue: Queue, gauge: Gauge, previous: Level, size: int, bar: Bar
) -> dict[str, float | None]:
    """Add waiting, then delayed backlog jobs up to `size` each: their cost and bytes."""
    added = size - previous.size
    before = await gauge.used()
    with bar.step(f"{size:,}: fill waiting", added) as advance:
        started = monotonic()
        await add_chunks(queue, BACKLOG, previous.size, size, advance)
        waiting_s = monotonic() - started
    middle = await gauge.used()
    with bar.step(f"{size:,}: fill delayed", added) as advance:
        started = monotonic()
        await add_chunks(queue, LATER, previous.size, size, advance, delay=FAR)
        delayed_s = monotonic() - started
    after = await gauge.used()

    def delta(low: int | None, high: int | None) -> int | None:
        return None if low is None or high is None else high - low

    files = gauge.files()
    return {
        "fill_waiting_us": waiting_s * 1e6 / added,
        "fill_delayed_us": delayed_s * 1e6 / added,
        "bytes_per_waiting": per_job(delta(before, middle), added),
        "bytes_per_delayed": per_job(delta(middle, after), added),
        "bytes_per_queued": per_job(delta(previous.base_used, after), 2 * size),
        "file_bytes_per_queued": per_job(files, 2 * size),
    }


async def measure_level(
    queue: Queue, gauge: Gauge, plan: Plan, previous: Level, size: int, bar: Bar
) -> Level:
    """Grow the queue to `size`, then measure every cost at that level."""
    metrics = await grow(queue, gauge, previous, size, bar)
    sample = plan.sample
    with bar.step(f"{size:,}: add", sample) as advance:
        cost = await measured(gauge, sample, lambda: add_one_by_one(queue, sample, advance))
    metrics |= cost.metrics("add")
    with bar.step(f"{size:,}: add_bulk", sample) as advance:
        cost = await measured(gauge, sample, lambda: add_chunks(
            queue, SAMPLE, sample, 2 * sample, advance, priority=URGENT))
    metrics |= cost.metrics("add_bulk")
    with bar.step(f"{size:,}: process", 2 * sample) as advance:
        cost = await measured(
            gauge, 2 * sample, lambda: process_sample(queue, plan, 2 * sample, advance))
    metrics |= cost.metrics("process")
    await expect_level(queue, size)
    with bar.step(f"{size:,}: delayed {PROBE_DELAY * 1000:.0f} ms", plan.probes) as advance:
        late = await probe_delayed(queue, plan, plan.probes, advance)
    stats = spread(late)
    metrics |= {"late_p50_ms": stats["p50_ms"], "late_p99_ms": stats["p99_ms"],
                "late_max_ms": stats["max_ms"], "early": sum(1 for ms in late if ms < 0)}
    await expect_level(queue, size)
    return Level(size, previous.base_used, metrics)


async def warm_up(queue: Queue, plan: Plan) -> None:
    """Every step once on the empty queue, so the first level pays no first-use costs."""
    await queue.add(SAMPLE, {"i": -1}, priority=URGENT)
    await add_chunks(queue, SAMPLE, 0, WARMUP_JOBS, ignore, priority=URGENT)
    await process_sample(queue, plan, WARMUP_JOBS + 1, ignore)
    await probe_delayed(queue, plan, WARMUP_PROBES, ignore)


async def measure(plan: Plan) -> tuple[list[dict[str, Any]], float | None]:
    """Every level in increasing order (its size and costs), and how long the queue took to
    obliterate at the end (None: it failed)."""
    queue = Queue(SCALE_QUEUE, url=plan.url)
    gauge = Gauge(plan.url)
    bar = Bar()
    levels: list[dict[str, Any]] = []
    try:
        await queue.obliterate(force=True)  # also the first contact: a bad store fails here
        with bar.progress:
            await warm_up(queue, plan)
            level = Level(base_used=await gauge.used())
            for size in plan.sizes:
                started = monotonic()
                level = await measure_level(queue, gauge, plan, level, size, bar)
                levels.append({"level": size, "seconds": monotonic() - started,
                               **level.metrics})
                click.echo(f"scale: level {size:,} measured in {monotonic() - started:.0f} s",
                           err=True)
    finally:
        obliterated = await obliterate(queue)
        await queue.close()
        await gauge.close()
    return levels, obliterated


async def obliterate(queue: Queue) -> float | None:
    """Remove the queue at the end: the seconds it took, or None (with a warning) when the
    store refused or timed out, so a failure here neither hides the measurements nor
    passes unnoticed (removing the largest level is itself a cost that grows with it)."""
    started = monotonic()
    try:
        await queue.obliterate(force=True)
    except Exception as exc:
        click.secho(f"scale: obliterating {SCALE_QUEUE} at the end failed: {exc}", fg="red",
                    err=True)
        return None
    return monotonic() - started


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A cost in the table: its key in a level's metrics, header, format, store (None: both)."""

    key: str
    header: str
    form: str = "{:,.1f}"
    store: str | None = None


COLUMNS = (
    Column("fill_waiting_us", "fill waiting\nµs/job"),
    Column("fill_delayed_us", "fill delayed\nµs/job"),
    Column("add_us", "add\nµs/job"),
    Column("add_bulk_us", "add_bulk\nµs/job"),
    Column("process_us", "process\nµs/job"),
    Column("late_p50_ms", "delayed late\np50 ms", "{:,.2f}"),
    Column("late_p99_ms", "delayed late\np99 ms", "{:,.2f}"),
    Column("early", "early", "{:,.0f}"),
    Column("add_store_cpu_us", "redis CPU\nadd µs/job", store="redis"),
    Column("add_bulk_store_cpu_us", "redis CPU\nadd_bulk µs/job", store="redis"),
    Column("process_store_cpu_us", "redis CPU\nprocess µs/job", store="redis"),
    Column("bytes_per_waiting", "B per\nwaiting job", "{:,.0f}"),
    Column("bytes_per_delayed", "B per\ndelayed job", "{:,.0f}"),
    Column("bytes_per_queued", "B per\nqueued job", "{:,.0f}"),
    Column("file_bytes_per_queued", "file+WAL B\nper queued job", "{:,.0f}", store="sqlite"),
)
NOT_COSTS = frozenset({"early"})  # a count that must be 0, not a cost to compare


def columns(store: str) -> list[Column]:
    """The columns that apply to this store."""
    return [column for column in COLUMNS if column.store in (None, store)]


def ratios(levels: list[dict[str, Any]]) -> dict[str, float]:
    """Each cost at the largest level divided by the same cost at the smallest."""
    if len(levels) < 2:
        return {}
    low, high = levels[0], levels[-1]
    return {
        key: high[key] / low[key]
        for key in low
        if key not in NOT_COSTS | {"level", "seconds"}
        and isinstance(low[key], int | float) and low[key] > 0
        and isinstance(high.get(key), int | float)
    }


def report(
    plan: Plan, levels: list[dict[str, Any]], obliterate_s: float | None
) -> dict[str, Any]:
    """Everything about the run, as one JSON-ready object."""
    return {
        "corral": __version__,
        "store": store_of(plan.url),
        "url": "temporary SQLite file" if plan.temporary else redact(plan.url),
        "queue": SCALE_QUEUE,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sample": plan.sample,
        "probes": plan.probes,
        "probe_delay_ms": PROBE_DELAY * 1000,
        "concurrency": plan.concurrency,
        "levels": levels,
        "ratios": ratios(levels),
        "obliterate_s": obliterate_s,
    }


def store_of(url: str) -> str:
    """`sqlite` or `redis`."""
    return "sqlite" if urlsplit(url).scheme == "sqlite" else "redis"


def table(summary: dict[str, Any]) -> Table:
    """The levels as rows, the costs as columns."""
    out = Table(
        title=(f"corral {summary['corral']} at scale on {summary['store']} ({summary['url']}), "
               f"Python {summary['python']}, {summary['cpus']} CPUs: each level has as many "
               f"waiting as delayed jobs; samples of {summary['sample']:,} jobs, "
               f"{summary['probes']:,} delayed probes, worker concurrency "
               f"{summary['concurrency']}"),
        title_justify="left",
        caption=obliterate_caption(summary), caption_justify="left",
    )
    shown = columns(summary["store"])
    out.add_column("level\n(each)", justify="right")
    for column in shown:
        out.add_column(column.header, justify="right")
    for level in summary["levels"]:
        cells = [f"{level['level']:,}"]
        for column in shown:
            value = level.get(column.key)
            cells.append("-" if value is None else column.form.format(value))
        out.add_row(*cells)
    return out


def obliterate_caption(summary: dict[str, Any]) -> str | None:
    """How long removing the largest level took."""
    if not summary["levels"]:
        return None
    largest = summary["levels"][-1]["level"]
    seconds = summary["obliterate_s"]
    took = "failed (see above)" if seconds is None else f"{seconds:.1f} s"
    return f"obliterating the queue at {largest:,} waiting + {largest:,} delayed jobs: {took}"


def ratio_line(summary: dict[str, Any]) -> str:
    """The last line: each cost at the largest level ÷ at the smallest."""
    levels = summary["levels"]
    if len(levels) < 2:
        return "one level only: no ratio"
    parts = [
        f"{column.header.replace(chr(10), ' ')} ×{summary['ratios'][column.key]:.2f}"
        for column in columns(summary["store"])
        if column.key in summary["ratios"]
    ]
    return (f"largest ÷ smallest level ({levels[-1]['level']:,} ÷ {levels[0]['level']:,}; "
            f"flat is ×1): " + ", ".join(parts))


# -- the command -----------------------------------------------------------------------------


def parse_sizes(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """`1000,10_000,100000` → the levels, increasing, each counted once."""
    if value is None:
        return None
    try:
        sizes = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of job counts",
                                 ctx=ctx, param=param) from None
    if not sizes or sizes[0] < 1:
        raise click.BadParameter("give at least one level, each at least 1", ctx=ctx,
                                 param=param)
    return tuple(sizes)


@click.command()
@click.option("--url", metavar="URL",
              help="Store to measure, on its queue corral-scale (emptied before and after) "
                   "[default: a temporary SQLite file]. CORRAL_URL is not read.")
@click.option("--sizes", callback=parse_sizes, metavar="N,N,...",
              help="Fill levels: waiting jobs, and as many delayed ones "
                   "[default: 1000,10000,100000,1000000].")
@click.option("--quick", is_flag=True, help="Levels 1000,10000,100000.")
@click.option("--sample", default=2_000, show_default=True, type=click.IntRange(min=1),
              help="Jobs of the add and add_bulk steps each (process runs both samples).")
@click.option("--probes", default=1_000, show_default=True, type=click.IntRange(min=1),
              help="Delayed jobs of the delayed step.")
@click.option("--concurrency", default=50, show_default=True, type=click.IntRange(min=1),
              help="Concurrency of the worker.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def main(
    url: str | None, sizes: tuple[int, ...] | None, quick: bool, sample: int, probes: int,
    concurrency: int, as_json: bool,
) -> None:
    """Measure the cost per job of corral at growing fill levels: flat is the goal."""
    if quick and sizes is not None:
        raise click.UsageError("give --sizes or --quick, not both")
    with tempfile.TemporaryDirectory(prefix="corral-scale-") as tmp:
        plan = Plan(
            url=resolve_url(url) if url is not None else f"sqlite:///{Path(tmp) / 'scale.db'}",
            sizes=QUICK_SIZES if quick else sizes or SIZES, sample=sample, probes=probes,
            concurrency=concurrency, temporary=url is None,
        )
        click.secho(f"scale: store {redact(plan.url)}"
                    + (" (temporary)" if plan.temporary else ""), dim=True, err=True)
        summary = report(plan, *run(measure(plan)))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        console = stdout()
        console.print(table(summary))
        console.print(ratio_line(summary))
    early = sum(level["early"] for level in summary["levels"])
    if early:
        raise BenchFailure(f"{early} delayed jobs started before they were due")


if __name__ == "__main__":
    main()
