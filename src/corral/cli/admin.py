"""The commands that add, inspect and manage jobs and queues."""

from __future__ import annotations

import contextlib
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.clock import SYSTEM
from corral.job import Job
from corral.job_state import JobState
from corral.monitoring import WorkerInfo
from corral.options import parse_duration

from .common import (
    STATE_COLUMNS,
    Store,
    UserError,
    ago,
    cut,
    parse_json,
    plural,
    run,
    short_json,
    stdout,
    url_option,
)

STATES = click.Choice([state.value for state in JobState])


# -- add -------------------------------------------------------------------------------------


@click.command()
@click.argument("queue")
@click.argument("name")
@click.option("--data", default="null", metavar="JSON", help="The job's data, as JSON.")
@click.option("--delay", metavar="DURATION", help="Run later: 30s, 5m, 2h, 1d.")
@click.option("--job-id", metavar="ID", help="Your own id (an id still stored is not re-added).")
@click.option("--attempts", type=click.IntRange(min=1), help="Attempts before it fails.")
@click.option("--priority", type=int, help="Lower runs first (default 0).")
@url_option
def add(
    queue: str, name: str, data: str, delay: str | None, job_id: str | None,
    attempts: int | None, priority: int | None, url: str | None,
) -> None:
    """Add a job to QUEUE and print its id."""
    options: dict[str, Any] = {}
    if delay is not None:
        options["delay"] = parse_duration(delay, "--delay")
    if job_id is not None:
        options["job_id"] = job_id
    if attempts is not None:
        options["attempts"] = attempts
    if priority is not None:
        options["priority"] = priority
    value = parse_json(data, "--data")
    job = run(_add(url, queue, name, value, options))
    click.echo(job.id)
    if job.duplicate:
        click.secho(f"job {job.id!r} already existed ({job.state}); it was left unchanged",
                    fg="yellow", err=True)


async def _add(
    url: str | None, queue_name: str, name: str, data: Any, options: dict[str, Any]
) -> Job:
    async with Store(url) as store:
        queue = await store.queue(queue_name, must_exist=False)
        return await queue.add(name, data, **options)


# -- stats -----------------------------------------------------------------------------------


@click.command()
@click.argument("queue", required=False)
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
@url_option
def stats(queue: str | None, watch: bool, url: str | None) -> None:
    """Show the jobs per state and the live workers of QUEUE (default: of every queue).

    A queue with waiting jobs and no live worker is flagged `no worker`; with QUEUE,
    its workers are listed too."""
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --watch ends
        run(_stats(url, queue, watch))


async def _stats(url: str | None, queue_name: str | None, watch: bool) -> None:
    async with Store(url) as store:
        if queue_name is not None:
            await store.queue(queue_name)  # refuses an unknown queue before any table
        if not watch:
            stdout().print(await _stats_table(store, queue_name))
            return
        with Live(await _stats_table(store, queue_name), console=stdout(),
                  auto_refresh=False) as live:
            while True:
                await SYSTEM.sleep(1)
                live.update(await _stats_table(store, queue_name), refresh=True)


async def _stats_table(store: Store, queue_name: str | None) -> RenderableType:
    names = [queue_name] if queue_name else await store.queue_names()
    if not names:
        return Text("no queues yet: add a job with `corral add QUEUE NAME`")
    table = Table(title=f"corral · {SYSTEM.now():%H:%M:%S}", title_justify="left")
    table.add_column("queue")
    table.add_column("paused")
    table.add_column("workers", justify="right")
    for state in STATE_COLUMNS:
        table.add_column(state, justify="right")
    unattended: list[str] = []
    workers: list[WorkerInfo] = []
    for name in names:
        queue = await store.queue(name, must_exist=False)
        counts = await queue.counts()
        paused = await queue.is_paused()
        workers = await queue.workers()
        if counts.get("waiting", 0) and not workers:
            unattended.append(name)
        table.add_row(
            Text(name), Text("yes", style="yellow") if paused else "no",
            _workers_cell(len(workers), name in unattended),
            *(_count(counts.get(state, 0), state) for state in STATE_COLUMNS),
        )
    if unattended:
        table.caption = f"no worker: waiting jobs and no live worker on {', '.join(unattended)}"
        table.caption_style = "red"
        table.caption_justify = "left"
    if queue_name is None:
        return table
    return Group(table, _workers_table(queue_name, workers))


def _workers_cell(count: int, unattended: bool) -> Text:
    if unattended:
        return Text("no worker", style="bold red")
    return Text(str(count), style="" if count else "dim")


def _workers_table(queue_name: str, workers: list[WorkerInfo]) -> RenderableType:
    if not workers:
        return Text(f"no live workers on {queue_name!r}", style="dim")
    table = Table(title=f"workers of {queue_name!r}", title_justify="left")
    table.add_column("id")
    table.add_column("host")
    table.add_column("pid", justify="right")
    table.add_column("concurrency", justify="right")
    table.add_column("started")
    table.add_column("last heartbeat")
    for worker in workers:
        table.add_row(
            worker.id, worker.host, str(worker.pid), str(worker.concurrency),
            ago(worker.started_at), ago(worker.last_heartbeat),
        )
    return table


def _count(count: int, state: str) -> Text:
    style = {"failed": "red", "active": "cyan", "completed": "green"}.get(state, "")
    return Text(str(count), style=style if count else "dim")


# -- jobs, job -------------------------------------------------------------------------------


@click.command()
@click.argument("queue")
@click.option("--state", required=True, type=STATES, help="Which jobs to list.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@url_option
def jobs(queue: str, state: str, limit: int, offset: int, url: str | None) -> None:
    """List the jobs of QUEUE in one state."""
    run(_jobs(url, queue, state, limit, offset))


async def _jobs(url: str | None, queue_name: str, state: str, limit: int, offset: int) -> None:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        found = await queue.jobs(state, offset=offset, limit=limit)
        total = (await queue.counts()).get(state, 0)
    if not found:
        click.echo(f"no {state} jobs in {queue_name!r}" + (f" at offset {offset}"
                                                           if offset else ""))
        return
    last = {"delayed": "due", "completed": "result", "failed": "reason"}.get(state, "progress")
    table = Table(title=f"{queue_name} · {state} · {offset + 1}-{offset + len(found)} of {total}",
                  title_justify="left")
    for column in ("id", "name", "attempts", "priority", "created", last):
        table.add_column(column, overflow="fold")
    for job in found:
        detail = {
            "due": ago(job.run_at), "result": short_json(job.return_value),
            "reason": cut(job.failed_reason), "progress": short_json(job.progress),
        }[last]
        table.add_row(Text(job.id), Text(job.name), str(job.attempts_made), str(job.priority),
                      ago(job.created_at), Text(detail))
    stdout().print(table)


@click.command()
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@url_option
def job(queue: str, job_id: str, url: str | None) -> None:
    """Show everything about one job: fields, data, logs and stacktrace."""
    run(_job(url, queue, job_id))


async def _job(url: str | None, queue_name: str, job_id: str) -> None:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        found = await store.job(queue, job_id)
        logs = await found.logs()
    click.echo("\n".join(_job_lines(found, logs)))


JOB_FIELDS = ("id", "name", "queue", "state", "attempts_made", "stalled_count", "priority",
              "progress", "return_value", "failed_reason", "created_at", "processed_at",
              "finished_at", "run_at", "tags", "group", "options", "data")


def _job_lines(found: Job, logs: list[str]) -> list[str]:
    # Plain lines rather than a rich table: they read the same in a terminal and in grep.
    values = found.to_json()
    lines = []
    for key in JOB_FIELDS:
        value = values[key]
        shown = value if isinstance(value, str) else short_json(value, 100_000)
        lines.append(f"{click.style(f'{key:<14}', bold=True)} "
                     f"{shown if value not in (None, [], {}) else '-'}")
    lines.append(click.style(f"\nlogs ({len(logs)})", bold=True))
    lines.extend(f"  {line}" for line in logs)
    if found.stacktrace:
        lines += [click.style("\nstacktrace", bold=True), found.stacktrace.rstrip()]
    return lines


# -- changing jobs and queues ----------------------------------------------------------------


@click.command()
@click.argument("queue")
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job instead.")
@click.option("--limit", type=click.IntRange(min=1), help="With --failed: at most this many.")
@url_option
def retry(
    queue: str, job_id: str | None, all_failed: bool, limit: int | None, url: str | None
) -> None:
    """Run a failed (or completed) job again: one by ID, or every failed one with --failed."""
    if (job_id is None) == (not all_failed):
        raise UserError("give a job ID or --failed (not both)")
    run(_retry(url, queue, job_id, limit))


async def _retry(url: str | None, queue_name: str, job_id: str | None, limit: int | None) -> None:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        if job_id is None:
            count = await queue.retry_failed(limit)
            click.echo(f"retried {plural(count, 'failed job')}")
            return
        found = await store.job(queue, job_id)
        if not await queue.retry(job_id):
            raise UserError(f"job {job_id!r} is {found.state}: only failed or completed jobs "
                            "can be retried")
    click.echo(f"job {job_id!r} is waiting to run again")


@click.command()
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@url_option
def remove(queue: str, job_id: str, url: str | None) -> None:
    """Remove one job (refused while a worker runs it)."""
    run(_remove(url, queue, job_id))


async def _remove(url: str | None, queue_name: str, job_id: str) -> None:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        await store.job(queue, job_id)
        await queue.remove(job_id)
    click.echo(f"removed job {job_id!r}")


@click.command()
@click.argument("queue")
@url_option
def pause(queue: str, url: str | None) -> None:
    """Stop workers taking jobs from QUEUE (adds still succeed)."""
    run(_pause(url, queue, True))
    click.echo(f"paused {queue!r}")


@click.command()
@click.argument("queue")
@url_option
def resume(queue: str, url: str | None) -> None:
    """Let workers take jobs from QUEUE again."""
    run(_pause(url, queue, False))
    click.echo(f"resumed {queue!r}")


async def _pause(url: str | None, queue_name: str, paused: bool) -> None:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        await (queue.pause() if paused else queue.resume())


@click.command()
@click.argument("queue")
@click.option("--state", required=True, type=STATES, help="Which jobs to remove.")
@click.option("--grace", required=True, metavar="DURATION",
              help="Keep jobs younger than this: 0, 30s, 1h, 7d.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1))
@url_option
def clean(queue: str, state: str, grace: str, limit: int, url: str | None) -> None:
    """Remove old jobs of one state from QUEUE."""
    grace_s = parse_duration(grace, "--grace")
    count = run(_clean(url, queue, state, grace_s, limit))
    click.echo(f"removed {plural(count, f'{state} job')}")


async def _clean(url: str | None, queue_name: str, state: str, grace: float, limit: int) -> int:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        return len(await queue.clean(state, grace=grace, limit=limit))
