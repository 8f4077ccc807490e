"""Run the tickets story on local SQLite files: `python -m examples.tickets`.

The auto-closes are due in a day. To show the story in a few seconds, this runs it in
fast-forward: it promotes the next delayed job (makes it due now), lets the worker run
what is due, and prints what the stand-in mailer was asked to send.
"""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path

import corral
from corral.clock import SYSTEM
from examples.standins import CallLog

from .app import QUEUE, Tickets, run_story, setup
from .services import services
from .store import Database

STORE = Path("tickets.db")  # corral's jobs
APP = Path("tickets.app.db")  # the help desk's tickets, and the stand-in's calls


def _show(db: Database, when: str) -> None:
    print(f"\nTickets {when}:")
    for n in range(1, 6):
        ticket = db.ticket(f"T-{n}")
        if ticket is None:
            print(f"  T-{n}  deleted")
        else:
            never = "" if ticket.auto_close else "  (never auto-closed)"
            print(f"  T-{n}  {ticket.status:<15} {ticket.subject}{never}")


async def main() -> None:
    """Start afresh, play the story, and print what happened."""
    for path in APP.parent.glob(APP.name + "*"):
        path.unlink()  # the app's file, with its -wal and -shm
    url = f"sqlite:///{STORE}"
    print(f"corral store: {url}    help desk and stand-in calls: {APP}")
    log = CallLog(APP, SYSTEM)
    async with corral.Queue(QUEUE, url=url) as queue:
        await queue.obliterate(force=True)
        await setup(queue)
        await run_story(url, SYSTEM, log)
        with closing(Database(APP)) as db:
            _show(db, "after the help desk's day")
            print("\nPending:")
            for job in await queue.jobs("delayed", limit=100):
                assert job.run_at is not None
                hours = (job.run_at - job.created_at).total_seconds() / 3600
                print(f"  {job.id:<16} closes in {round(hours)} h")

            print("\nFast-forward, each job in turn:")
            worker = Tickets(queue, db, services(log)).worker()
            while due := await queue.jobs("delayed", limit=1):
                await queue.promote(due[0].id)
                await worker.run(burst=True)
                done = await queue.get_job(due[0].id)
                print(f"  {due[0].id:<16} -> {done.return_value if done else '?'}")
            for call in log.calls():
                print(f"      {call.service}.{call.action}: to={call.payload['to']},"
                      f" template={call.payload['template']}")
            _show(db, "now")
    log.close()


if __name__ == "__main__":
    asyncio.run(main())
