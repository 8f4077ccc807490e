"""`corral demo`: the five reference applications together, on a sped-up clock, live.

The applications live in `examples/` of a corral checkout. The demo runs their workers and
the dashboard in this process over one SQLite file, on a `FastClock` that makes an hour
pass each second, so a 48-hour email chain, nightly and monthly schedules and a broadcast
at 20 messages a minute play out within a minute. It prints the dashboard's URL and a live
summary, and stops cleanly on Ctrl-C or after `--duration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import click
import uvicorn
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.backends import redact, resolve_url
from corral.clock import SYSTEM, Clock, monotonic
from corral.queue import Queue
from corral.testing import FastClock
from corral.worker import Worker

from .common import STATE_COLUMNS, Store, UserError, announce, run, stdout

DEMO_DIR: Final = Path("corral-demo")
SPEED: Final = 3600.0
"""An hour of the applications' time per real second."""
EXAMPLES: Final = ("lead_funnel", "tickets", "scheduled_messages", "broadcast", "agent_platform")
SETUP_TAKES_QUEUE: Final = frozenset({"lead_funnel", "tickets"})
MARKER: Final = ".corral-demo"
"""The file that marks a directory as the demo's own, so it may be emptied."""
REFRESH: Final = 0.5
CLOSE_TIMEOUT: Final = 3.0
CALLS_SHOWN: Final = 2
"""The newest outside calls shown per application."""


def demo_start(now: datetime) -> datetime:
    """23:00 UTC on the last day of `now`'s month: the monthly credit grant (the 1st, 00:05)
    and the nightly rollup (02:00) come within seconds of the start."""
    first_of_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
    last_day = first_of_next - timedelta(days=1)
    return datetime(last_day.year, last_day.month, last_day.day, 23, tzinfo=UTC)


# -- the applications ------------------------------------------------------------------------


@dataclass
class Example:
    """One reference application and its record of outside calls."""

    name: str
    module: ModuleType
    log: Any  # examples.standins.CallLog: the examples package is not part of corral

    async def setup(self, url: str, clock: Clock) -> None:
        """Configure its queues and schedules (some take their open Queue)."""
        if self.name in SETUP_TAKES_QUEUE:
            async with Queue(self.module.QUEUE, url=url, clock=clock) as queue:
                await self.module.setup(queue)
        else:
            await self.module.setup(url, clock)

    def workers(self, url: str, clock: FastClock) -> list[Worker]:
        """Its workers, with locks of a few real seconds on the fast clock."""
        seconds = clock.speed * 5
        workers: list[Worker] = self.module.workers(
            url, clock, self.log, lock_duration=seconds, stalled_interval=seconds
        )
        return workers


def checkout_root() -> Path:
    """The corral checkout whose `examples/` the demo runs (the working directory or the one
    this corral is installed from)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / "examples" / "__init__.py").is_file():
            return base
    raise UserError(
        "corral demo runs the reference applications in examples/ of a corral checkout:"
        " run it from the checkout (./scripts/demo)"
    )


def load_examples(directory: Path, clock: Clock) -> list[Example]:
    """Import the five applications, each with its own call log in `directory`."""
    root = str(checkout_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    standins = importlib.import_module("examples.standins")
    return [
        Example(name, importlib.import_module(f"examples.{name}"),
                standins.CallLog(directory / f"{name}.db", clock))
        for name in EXAMPLES
    ]


# -- the dashboard ---------------------------------------------------------------------------


class DashboardServer(uvicorn.Server):
    """uvicorn on a socket of our own, leaving Ctrl-C to the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(port: int) -> socket.socket:
    """A loopback socket on `port`, or on any free port when that one is taken."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


# -- the live view ---------------------------------------------------------------------------


@dataclass
class DemoState:
    """What the demo shows: counts per queue, recent outside calls, totals."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    recent: list[Text] = field(default_factory=list)
    started: float = field(default_factory=monotonic)

    def elapsed(self) -> float:
        """Real seconds since the demo started."""
        return monotonic() - self.started


def describe(payload: dict[str, Any]) -> str:
    """A call's payload in a few words."""
    words = [f"{key}={value}" for key, value in payload.items()
             if isinstance(value, str | int | float | bool)]
    text = " ".join(words)
    return text if len(text) <= 60 else text[:59] + "…"


def render(state: DemoState, clock: Clock, dashboard: str) -> RenderableType:
    """Counts per queue, calls per application and the latest calls."""
    table = Table(title=f"{clock.now():%a %d %b %H:%M} UTC (an hour a second) · "
                        f"{state.elapsed():.0f}s · dashboard {dashboard}", title_justify="left")
    table.add_column("queue")
    for column in STATE_COLUMNS:
        table.add_column(column, justify="right")
    for name, counts in sorted(state.counts.items()):
        table.add_row(name, *(str(counts.get(column, 0)) for column in STATE_COLUMNS))
    calls = Text("outside calls: " + ", ".join(
        f"{name} {count}" for name, count in state.calls.items()), style="bold")
    return Group(table, calls, *state.recent)


async def observe(state: DemoState, store: Store, examples: list[Example]) -> None:
    """Read the counts of every queue and the newest outside calls."""
    for name in await store.queue_names():
        state.counts[name] = await (await store.queue(name, must_exist=False)).counts()
    latest: list[tuple[datetime, Text]] = []
    for example in examples:
        calls = example.log.calls()
        state.calls[example.name] = len(calls)
        for call in calls[-CALLS_SHOWN:]:
            line = f"{call.at:%a %H:%M}  {example.name}: {call.service}.{call.action} "
            latest.append((call.at, Text(line + describe(call.payload))))
    latest.sort(key=lambda item: item[0])
    state.recent = [text for _, text in latest]


# -- running it ------------------------------------------------------------------------------


async def run_demo(
    url: str, directory: Path, duration: float, port: int,
    on_ready: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[DemoState, bool]:
    """Set up the five applications, run their stories, workers and the dashboard until
    `duration` real seconds pass or Ctrl-C; (state, interrupted)."""
    from corral.web import create_app

    clock = FastClock(SPEED, start=demo_start(SYSTEM.now()))
    examples = load_examples(directory, clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sock = listen(port)
    dashboard = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = DashboardServer(uvicorn.Config(
        create_app(url, clock=clock), log_level="warning", lifespan="on", server_header=False,
    ))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    workers: list[Worker] = []
    running: list[asyncio.Task[int]] = []
    state = DemoState()
    try:
        for example in examples:
            await example.setup(url, clock)
            await example.module.run_story(url, clock, example.log)
            workers += example.workers(url, clock)
        running = [asyncio.create_task(worker.run()) for worker in workers]
        stdout().print(f"dashboard: {dashboard}  (Ctrl-C stops the demo)")
        if on_ready is not None:
            await on_ready(dashboard)
        async with Store(url, quiet=True) as store:
            with Live(render(state, clock, dashboard), console=stdout(),
                      auto_refresh=False) as live:
                while not stop.is_set() and state.elapsed() < duration:
                    await observe(state, store, examples)
                    live.update(render(state, clock, dashboard), refresh=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), REFRESH)
            await observe(state, store, examples)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await asyncio.gather(*(worker.close(timeout=CLOSE_TIMEOUT) for worker in workers))
        await asyncio.gather(*running, return_exceptions=True)
        server.should_exit = True
        await serving
        for example in examples:
            example.log.close()
    return state, stop.is_set()


def summary(state: DemoState, interrupted: bool, url: str, directory: Path) -> RenderableType:
    """What happened, and where to look afterwards."""
    totals = {column: sum(counts.get(column, 0) for counts in state.counts.values())
              for column in STATE_COLUMNS}
    how = "interrupted" if interrupted else "time is up"
    flag = f" --url '{redact(url)}'"
    return Group(
        Text(f"\n{how} after {state.elapsed():.0f}s: {len(state.counts)} queues, "
             f"{totals['completed']} jobs completed, {totals['failed']} failed, "
             f"{totals['delayed']} still delayed; {sum(state.calls.values())} outside calls "
             f"recorded in {directory}/", style="bold"),
        Text("Look around:"),
        Text(f"  corral stats{flag}"),
        Text(f"  corral dashboard{flag}"),
    )


def fresh_directory(directory: Path) -> None:
    """Empty the demo's directory (every run starts from nothing), refusing to touch one
    that holds anything but an earlier demo."""
    if directory.exists() and any(directory.iterdir()) and not (directory / MARKER).exists():
        raise UserError(f"{directory} is not empty and not a corral demo directory:"
                        " pick another --dir")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / MARKER).touch()


@click.command()
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Stop after this many real seconds (Ctrl-C stops sooner).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="The dashboard's loopback port (any free one when it is taken).")
@click.option("--dir", "directory", default=str(DEMO_DIR), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo keeps its store and the applications' files; emptied first.")
def demo(duration: float, port: int, directory: Path) -> None:
    """Run the five reference applications, their workers and the dashboard, live."""
    fresh_directory(directory)
    url = resolve_url(f"sqlite:///{directory}/corral.db")
    announce(url)
    state, interrupted = run(run_demo(url, directory, duration, port))
    stdout().print(summary(state, interrupted, url, directory), soft_wrap=True)
