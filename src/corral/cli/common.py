"""What every `corral` command shares: the store option, errors, consoles and formatting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console

from corral.backends import open_backend, redact, resolve_url
from corral.backends.base import Backend
from corral.clock import SYSTEM
from corral.errors import JobNotFoundError
from corral.job import Job
from corral.options import check_label, check_queue_name
from corral.queue import Queue

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

PIPE_WIDTH = 200
STATE_COLUMNS = ("waiting", "delayed", "active", "completed", "failed", "waiting-children")


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit status 2."""

    exit_code = 2


def url_option(function: F) -> F:
    """The `--url` option every command takes (from `CORRAL_URL` when not given)."""
    decorator = click.option(
        "--url", envvar="CORRAL_URL", show_envvar=True, metavar="URL",
        help="Store URL, e.g. sqlite:///corral.db or redis://127.0.0.1:6379/0 "
             "[default: sqlite:///corral.db]",
    )
    return decorator(function)


def stdout() -> Console:
    """A console on the current standard output (looked up per call, so tests can swap it)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped into a file or grep: give tables their natural width instead of folding
        # ids and JSON at 80 columns.
        console = Console(highlight=False, width=max(console.width, PIPE_WIDTH))
    return console


def announce(url: str) -> None:
    """Say once which store a command uses (on stderr, so stdout stays scriptable)."""
    click.secho(f"corral: store {redact(url)}", dim=True, err=True)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop."""
    return asyncio.run(coroutine)


def parse_json(text: str, option: str) -> Any:
    """A JSON value from the command line, or a UserError naming the option."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{option} is not valid JSON ({exc}): {text!r}") from None


class Store:
    """One open store shared by the queues a command touches."""

    def __init__(self, url: str | None, *, quiet: bool = False) -> None:
        self.url = resolve_url(url)
        if not quiet:
            announce(self.url)
        self.backend: Backend = open_backend(self.url)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.backend.close()

    async def queue_names(self) -> list[str]:
        """Every queue in the store, sorted."""
        return sorted(await self.backend.queue_names())

    async def queue(self, name: str, *, must_exist: bool = True) -> Queue:
        """The queue `name`; a UserError when it must exist and the store has never seen it."""
        check_queue_name(name)
        if must_exist:
            names = await self.queue_names()
            if name not in names:
                known = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                hint = f" (queues: {known})" if names else " (the store has no queues yet)"
                raise UserError(f"no queue named {name!r} in {redact(self.url)}{hint}")
        return Queue._sharing(name, self.url, self.backend, SYSTEM)

    async def job(self, queue: Queue, job_id: str) -> Job:
        """The job `job_id` of `queue`, or JobNotFoundError."""
        job = await queue.get_job(check_label(job_id, "job id"))
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in queue {queue.name!r}")
        return job


# -- formatting ----------------------------------------------------------------------------


def ago(moment: datetime | None) -> str:
    """`12s ago`, `in 5m`, or `-`: a time relative to now, short enough for a table."""
    if moment is None:
        return "-"
    seconds = (moment - SYSTEM.now()).total_seconds()
    text = span(abs(seconds))
    return f"in {text}" if seconds > 0.5 else f"{text} ago"


def span(seconds: float) -> str:
    """A duration in its largest sensible unit: `850ms`, `42s`, `5m`, `3h`, `2d`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def plural(count: int, noun: str) -> str:
    """`1 job`, `2 jobs`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def short_json(value: Any, width: int = 40) -> str:
    """A JSON value on one line, cut to `width` characters."""
    if value is None:
        return "-"
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def cut(text: str | None, width: int = 60) -> str:
    """The first line of `text`, cut to `width` characters."""
    if not text:
        return "-"
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"
