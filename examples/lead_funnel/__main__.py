"""Run the lead funnel's story on local SQLite files: `python -m examples.lead_funnel`.

The jobs are due over the next two days. To show the whole story in a few seconds, this
runs it in fast-forward: it promotes the next delayed job (makes it due now), lets the
worker run what is due, and prints what the stand-in services were asked to do.
"""

from __future__ import annotations

import asyncio
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import corral
from corral.clock import SYSTEM
from examples.standins import CallLog

from .app import QUEUE, Funnel, run_story, setup
from .services import services
from .store import Database

STORE = Path("lead_funnel.db")  # corral's jobs
APP = Path("lead_funnel.app.db")  # the funnel's leads and lessons, and the stand-ins' calls


def _hours(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes / 60:g} h"


async def main() -> None:
    """Start afresh, play the story, and print what happened."""
    for path in APP.parent.glob(APP.name + "*"):
        path.unlink()  # the app's file, with its -wal and -shm
    url = f"sqlite:///{STORE}"
    print(f"corral store: {url}    app and stand-in calls: {APP}")
    log = CallLog(APP, SYSTEM)
    async with corral.Queue(QUEUE, url=url) as queue:
        await queue.obliterate(force=True)
        await setup(queue)
        await run_story(url, SYSTEM, log)
        print("\nThe web app planned:")
        for job in await queue.jobs("delayed", limit=100):
            assert job.run_at is not None
            print(f"  {job.id:<40} in {_hours(job.run_at - job.created_at)}")

        print("\nFast-forward, each job in turn:")
        seen = 0
        with closing(Database(APP)) as db:
            worker = Funnel(queue, db, services(log)).worker()
            while due := await queue.jobs("delayed", limit=1):
                job = due[0]
                assert job.run_at is not None
                await queue.promote(job.id)
                await worker.run(burst=True)
                done = await queue.get_job(job.id)
                result = done.return_value if done else "?"
                print(f"  {job.id:<40} ({_hours(job.run_at - job.created_at)} after it was"
                      f" planned) -> {result}")
                calls = log.calls()
                for call in calls[seen:]:
                    shown = ", ".join(f"{k}={v}" for k, v in call.payload.items() if k != "data")
                    print(f"      {call.service}.{call.action}: {shown}")
                seen = len(calls)
        print(f"\nJobs now: {await queue.counts()}")
    log.close()


if __name__ == "__main__":
    asyncio.run(main())
