"""`corral worker`: run the Workers an application defines, in one or several processes.

The target names a Worker, a list of Workers, or a function that builds them (and may first
configure queues and upsert schedules): see `find_workers` and `build_workers`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any, cast

import click

from corral.backends import resolve_url
from corral.worker import Worker, run_workers

from .common import UserError, announce, plural, run

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

WorkerFactory = Callable[..., Any]
"""A function that returns a Worker or a list of Workers (or an awaitable of either)."""


@click.command()
@click.argument("target", metavar="MODULE:ATTRIBUTE")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
              help="OS processes, each running every worker.")
@click.option("--burst", is_flag=True, help="Run the jobs due now, then exit.")
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Override each worker's concurrency.")
@click.option("--process-index", type=int, hidden=True)  # set on the processes we start
@click.option("--url", envvar="CORRAL_URL", show_envvar=True, metavar="URL",
              help="Store URL for workers built without url=, and the url= of a worker "
                   "function [default: sqlite:///corral.db]")
def worker(
    target: str, processes: int, burst: bool, concurrency: int | None,
    process_index: int | None, url: str | None,
) -> None:
    """Run the Workers at MODULE:ATTRIBUTE, e.g. app.jobs:workers.

    The attribute is a Worker, a list of Workers, or a function (sync or async) that returns
    either: it is called once in each worker process before the workers start, with the
    store URL as `url=` when it takes that keyword (a place to configure queues and upsert
    schedules).
    """
    if process_index is not None:
        # A child asked to stop while still starting up has nothing to hand back: leave quietly
        # (once running, the workers' own handlers close them gracefully).
        for signum in STOP_SIGNALS:
            signal.signal(signum, _exit_quietly)
    resolved = resolve_url(url)
    source = find_workers(target)  # in the parent too, so a bad target fails once, here
    if process_index is None:
        announce(resolved)
    if processes > 1:
        sys.exit(run_processes(target, processes, burst, concurrency, resolved))
    setup_logging("" if process_index is None else f"[{process_index}] ")
    ran = run(_run(target, source, resolved, burst, concurrency))
    if burst:
        prefix = "" if process_index is None else f"[{process_index}] "
        click.echo(f"{prefix}ran {plural(ran, 'attempt')}", err=True)


async def _run(
    target: str, source: list[Worker] | WorkerFactory, url: str, burst: bool,
    concurrency: int | None,
) -> int:
    # The factory runs on the workers' own event loop: whatever it opens lives in that loop.
    workers = await build_workers(target, source, url)
    for each in workers:
        each.bind_url(url)
        if concurrency is not None:
            each.concurrency = concurrency
    return await run_workers(workers, burst=burst, handle_signals=True)


def load_workers(target: str, url: str | None = None) -> list[Worker]:
    """The Workers named by `module:attribute`, imported from the cwd.

    The attribute is a Worker, a list of Workers, or a function returning either; a function
    is called here (awaited when async), with `url=` (`url`, else `CORRAL_URL`, else the
    default store) when it takes that keyword. Call it outside a running event loop.
    """
    source = find_workers(target)
    if isinstance(source, list):
        return source
    return run(build_workers(target, source, resolve_url(url)))


def find_workers(target: str) -> list[Worker] | WorkerFactory:
    """The Workers, or the function that builds them, at `module:attribute`; not called yet."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UserError(f"{target!r} is not MODULE:ATTRIBUTE (for example app.jobs:worker)")
    module = _import(module_name)
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UserError(f"module {module_name!r} has no attribute {attribute!r}") from None
    workers = _as_workers(found)
    if workers is not None:
        return workers
    if callable(found) and not isinstance(found, type):
        _takes_url(target, found)  # a signature we cannot call fails here, once
        return cast(WorkerFactory, found)
    raise UserError(
        f"{target} is {type(found).__name__}, not a corral.Worker, a list of them, "
        "or a function returning either"
    )


async def build_workers(
    target: str, source: list[Worker] | WorkerFactory, url: str
) -> list[Worker]:
    """`source` itself when it is a list of Workers; else call the function and check its result."""
    if isinstance(source, list):
        return source
    result = source(url=url) if _takes_url(target, source) else source()
    if inspect.isawaitable(result):
        result = await result
    workers = _as_workers(result)
    if workers is None:
        raise UserError(
            f"{target}() returned {type(result).__name__}, not a corral.Worker or a list of them"
        )
    return workers


def _as_workers(found: object) -> list[Worker] | None:
    if isinstance(found, Worker):
        return [found]
    if isinstance(found, list | tuple) and found and all(isinstance(w, Worker) for w in found):
        return list(found)
    return None


def _takes_url(target: str, factory: WorkerFactory) -> bool:
    """Whether the factory takes a `url` keyword; UserError when it needs any other argument."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): call it bare
        return False
    takes_url = False
    for parameter in parameters:
        if parameter.name == "url" and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY
        ):
            takes_url = True
        elif parameter.default is parameter.empty and parameter.kind not in (
            parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD
        ):
            raise UserError(
                f"{target} needs the argument {parameter.name!r}: a worker function takes "
                "no arguments, or only the store URL as `url`"
            )
    return takes_url


def _import(module_name: str) -> ModuleType:
    # Like `python -m`, look in the working directory first: that is where the app lives.
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the target itself missing is the user's typo; an import failing inside the
        # module is a bug in their code, and its traceback is what they need.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UserError(
                f"cannot import {module_name!r}: no module named {exc.name!r} in the working "
                "directory or the installed packages"
            ) from None
        raise


def run_processes(
    target: str, processes: int, burst: bool, concurrency: int | None, url: str
) -> int:
    """Start `processes` copies of this command, forward SIGINT/SIGTERM, wait for all."""
    command = [sys.executable, "-m", "corral.cli", "worker", target, "--url", url]
    if burst:
        command.append("--burst")
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    # Each child gets its own process group, so a terminal's Ctrl-C reaches it once, from us,
    # rather than twice (which a worker would take as "stop now").
    children = [
        subprocess.Popen([*command, "--process-index", str(index)], process_group=0)
        for index in range(1, processes + 1)
    ]

    forwarded: set[int] = set()

    def forward(signum: int, _frame: FrameType | None) -> None:
        forwarded.add(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # A child that died of the very signal we passed on (it came before Python could catch
    # it) stopped as asked.
    failed = next((code for code in codes if code and -code not in forwarded), 0)
    return 128 - failed if failed < 0 else failed  # killed by signal N: 128 + N, as shells do


def _exit_quietly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


class _EchoHandler(logging.Handler):
    """Log lines to the current stderr (looked up per line, so it survives stream swaps)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(
            f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S"
        ))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:
            self.handleError(record)


def setup_logging(prefix: str) -> None:
    """Show INFO logs on stderr, unless the application configured logging itself."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_EchoHandler(prefix))
        root.setLevel(logging.INFO)
