"""The `corral` command: run workers, add and inspect jobs, manage queues, try the demo."""

from __future__ import annotations

from typing import Any

import click

from corral import __version__
from corral.errors import CorralError

from .admin import add, clean, job, jobs, pause, remove, resume, retry, stats
from .bench import bench
from .common import UserError
from .dashboard import dashboard
from .demo import demo
from .schedules import schedules
from .workers import worker

__all__ = ["cli", "main"]


class CorralGroup(click.Group):
    """The command group; the one place where user mistakes become a message and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning corral's errors into one line on stderr and exit 2."""
        try:
            return super().invoke(ctx)
        except CorralError as exc:
            # Every CorralError is about the user's input or store (a bad option, an unknown
            # job, an unreachable store): the message says it all; a traceback would not help.
            raise UserError(str(exc)) from None


@click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral: a job queue for Python, on SQLite or Redis.

    Every command takes --url (or CORRAL_URL); the default store is sqlite:///corral.db.
    """


for command in (
    worker, add, stats, jobs, job, retry, remove, pause, resume, clean, schedules, dashboard,
    demo, bench,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the `corral` console script."""
    cli()
