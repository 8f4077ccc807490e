"""`corral schedules QUEUE`: a queue's schedules with their next and last run."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from corral.schedules import Schedule

from .common import Store, ago, run, short_json, span, stdout, url_option


@click.command()
@click.argument("queue")
@url_option
def schedules(queue: str, url: str | None) -> None:
    """List the schedules of QUEUE: when each fires next and last."""
    found = run(_schedules(url, queue))
    if not found:
        click.echo(f"no schedules in {queue!r}")
        return
    table = Table(title=f"{queue} · schedules", title_justify="left")
    for column in ("id", "when", "job", "data", "next run", "last run", "fired"):
        table.add_column(column, overflow="fold")
    for schedule in found:
        table.add_row(
            Text(schedule.id), _when(schedule), Text(schedule.job_name),
            Text(short_json(schedule.data)),
            ago(schedule.next_run) if schedule.next_run else "ended",
            ago(schedule.last_run) if schedule.last_run else "never",
            str(schedule.count) + (f" of {schedule.limit}" if schedule.limit else ""),
        )
    stdout().print(table)


def _when(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} ({schedule.tz})"
    assert schedule.every is not None
    return f"every {span(schedule.every.total_seconds())}"


async def _schedules(url: str | None, queue_name: str) -> list[Schedule]:
    async with Store(url) as store:
        queue = await store.queue(queue_name)
        return await queue.schedules()
