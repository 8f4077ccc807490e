"""`corral demo`: jobs that run, wait, fail, retry and report progress, worked off live."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.backends import redact, resolve_url
from corral.clock import monotonic
from corral.job import Job
from corral.options import Backoff, JobSpec
from corral.queue import Queue
from corral.worker import Worker

from .common import STATE_COLUMNS, announce, run, stdout

DEMO_QUEUE = "corral-demo"
DEMO_URL = "sqlite:///corral-demo.db"
BAR_WIDTH = 30
CLOSE_TIMEOUT = 3.0


class DemoError(Exception):
    """A job of the demo failing on purpose."""


# -- the jobs --------------------------------------------------------------------------------


async def resize(job: Job) -> dict[str, Any]:
    """Pretend to resize an image."""
    await asyncio.sleep(random.uniform(0.1, 0.6))
    return {"image": job.data["image"], "width": 640}


async def send_email(job: Job) -> str:
    """Pretend to send a reminder that was due later."""
    await asyncio.sleep(0.1)
    return f"sent to {job.data['to']}"


async def flaky(job: Job) -> str:
    """Fail the first attempt, as a call to a flaky service would; succeed on the retry."""
    if job.attempts_made == 0:
        raise DemoError("upstream timed out (first attempt always fails)")
    await asyncio.sleep(0.1)
    return "ok on retry"


async def doomed(job: Job) -> None:
    """Fail every attempt: this job ends in `failed`, the dead-letter queue."""
    raise DemoError(f"card {job.data['card']} declined")


async def report(job: Job) -> dict[str, int]:
    """Build a report in steps, logging and updating progress as it goes."""
    for percent in range(0, 101, 10):
        await job.update_progress(percent)
        if percent % 50 == 0:
            await job.log(f"{percent}% done")
        await asyncio.sleep(0.3)
    return {"rows": 1234}


PROCESSORS = {"resize": resize, "email": send_email, "flaky": flaky, "doomed": doomed,
              "report": report}


def demo_jobs() -> list[JobSpec]:
    """A few dozen jobs: immediate, delayed, flaky, doomed, and one with progress."""
    retrying: dict[str, Any] = {"attempts": 3, "backoff": Backoff.exponential(1)}
    return [
        *(JobSpec("resize", {"image": f"photo-{i}.jpg"}) for i in range(1, 21)),
        *(JobSpec("email", {"to": f"user{i}@example.com"}, delay=0.5 * i) for i in range(1, 11)),
        *(JobSpec("flaky", {"call": i}, **retrying) for i in range(1, 5)),
        JobSpec("doomed", {"card": "4000-0000-0000-0002"}, job_id="doomed", **retrying),
        JobSpec("report", {"month": "2026-02"}, job_id="report"),
    ]


# -- the live view ---------------------------------------------------------------------------


@dataclass
class DemoState:
    """What the demo has seen so far, for the live view and the summary."""

    counts: dict[str, int] = field(default_factory=dict)
    events: deque[Text] = field(default_factory=lambda: deque(maxlen=8))
    progress: Any = 0
    retries: int = 0
    started: float = field(default_factory=monotonic)

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return monotonic() - self.started

    def note(self, text: str, style: str = "") -> None:
        """Add a line to the recent events."""
        self.events.append(Text(f"{self.elapsed():5.1f}s  {text}", style=style))


def render(state: DemoState, total: int) -> RenderableType:
    """The live view: counts per state with bars, the report's progress, recent events."""
    table = Table(title=f"queue {DEMO_QUEUE!r} · {state.elapsed():.1f}s", title_justify="left")
    table.add_column("state")
    table.add_column("jobs", justify="right")
    table.add_column("", width=BAR_WIDTH)
    styles = {"active": "cyan", "completed": "green", "failed": "red", "delayed": "yellow"}
    for name in STATE_COLUMNS[:5]:
        count = state.counts.get(name, 0)
        bar = "█" * round(BAR_WIDTH * count / max(total, 1))
        table.add_row(name, str(count), Text(bar, style=styles.get(name, "white")))
    percent = state.progress if isinstance(state.progress, int | float) else 0
    progress = Text(f"report progress {percent:3.0f}% " + "▰" * int(percent // 10)
                    + "▱" * (10 - int(percent // 10)))
    return Group(table, progress, Text("recent events", style="bold"), *state.events)


# -- running it ------------------------------------------------------------------------------


def label(job: Job) -> str:
    """The job's name, and the start of its id when that says more."""
    return job.id if job.id == job.name else f"{job.name} {job.id[:8]}"


def watch_worker(worker: Worker, state: DemoState) -> None:
    """Record the worker's completions and failures as events."""
    def completed(job: Job, _result: Any) -> None:
        state.note(f"completed {label(job)}", "green")

    def failed(job: Job, exc: BaseException, will_retry: bool) -> None:
        if will_retry:
            state.retries += 1
            state.note(f"retrying {label(job)}: {exc}", "yellow")
        else:
            state.note(f"failed {label(job)} for good: {exc}", "red")

    worker.on("completed", completed)
    worker.on("failed", failed)


def finished(counts: dict[str, int]) -> bool:
    """True when nothing is waiting, delayed or active."""
    return not any(counts.get(name, 0) for name in ("waiting", "delayed", "active"))


async def run_demo(url: str, duration: float) -> tuple[DemoState, int, bool]:
    """Enqueue the demo jobs, work them off with a live view; (state, attempts, interrupted)."""
    queue = Queue(DEMO_QUEUE, url=url)
    await queue.obliterate(force=True)  # every run starts from a clean queue
    specs = demo_jobs()
    await queue.add_bulk(specs)
    worker = Worker(DEMO_QUEUE, PROCESSORS, url=url, concurrency=5)
    state = DemoState()
    watch_worker(worker, state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = asyncio.create_task(worker.run())
    try:
        with Live(render(state, len(specs)), console=stdout(), auto_refresh=False) as live:
            while not stop.is_set() and state.elapsed() < duration and not running.done():
                state.counts = await queue.counts()
                report_job = await queue.get_job("report")
                state.progress = report_job.progress if report_job else 100
                live.update(render(state, len(specs)), refresh=True)
                if finished(state.counts):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        # Active jobs get a moment to finish; the rest go back to waiting. A second Ctrl-C
        # (the default handler again) stops at once.
        await worker.close(timeout=CLOSE_TIMEOUT)
        attempts = await running
        state.counts = await queue.counts()
        await queue.close()
    return state, attempts, stop.is_set()


def summary(state: DemoState, attempts: int, interrupted: bool, url: str) -> RenderableType:
    """What happened, and the commands to look around afterwards."""
    counts = state.counts
    how = "interrupted" if interrupted else ("done" if finished(counts) else "time is up")
    left = counts.get("waiting", 0) + counts.get("delayed", 0) + counts.get("active", 0)
    flag = f" --url '{redact(url)}'"
    return Group(
        Text(f"\n{how} after {state.elapsed():.1f}s: {counts.get('completed', 0)} completed, "
             f"{counts.get('failed', 0)} failed, {state.retries} retries, {attempts} attempts"
             + (f", {left} left" if left else ""), style="bold"),
        Text("Look around:"),
        Text(f"  corral stats {DEMO_QUEUE}{flag}"),
        Text(f"  corral jobs {DEMO_QUEUE} --state failed{flag}"),
        Text(f"  corral job {DEMO_QUEUE} report{flag}"),
    )


@click.command()
@click.option("--duration", default=20.0, show_default=True, type=click.FloatRange(min=1),
              help="Stop after this many seconds even if work remains.")
@click.option("--url", metavar="URL",
              help=f"Store URL [default: {DEMO_URL}; CORRAL_URL is ignored so the demo never "
                   "writes into your store by accident]")
def demo(duration: float, url: str | None) -> None:
    """Enqueue a few dozen jobs and watch a worker run, retry and fail them, live."""
    resolved = resolve_url(url or DEMO_URL)
    announce(resolved)
    state, attempts, interrupted = run(run_demo(resolved, duration))
    stdout().print(summary(state, attempts, interrupted, resolved), soft_wrap=True)
