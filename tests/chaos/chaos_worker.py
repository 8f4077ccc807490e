"""A worker process for the chaos tests: `python -m tests.chaos.chaos_worker URL QUEUE ...`
(cwd = the repository root, CORRAL_CHAOS_LEDGER = the ledger directory).

Runs `corral.Worker` over the processors of `chaos_jobs` until SIGTERM/SIGINT, and records
what the store accepted or refused (see `ledger`). Logs (WARNING and up) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import corral

from .chaos_jobs import PROCESSORS
from .ledger import lock_lost_job, writer


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chaos_worker")
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lock", type=float, default=2.0, help="lock_duration, seconds")
    parser.add_argument("--stalled", type=float, default=1.0, help="stalled_interval, seconds")
    parser.add_argument("--max-stalled", type=int, default=1000)
    parser.add_argument("--isolation", default="thread")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> corral.Worker:
    worker = corral.Worker(
        args.queue, PROCESSORS, url=args.url, concurrency=args.concurrency,
        lock_duration=args.lock, stalled_interval=args.stalled,
        max_stalled_count=args.max_stalled, isolation=args.isolation,
    )
    ledger = writer("worker")

    def completed(job: corral.Job, result: Any) -> None:
        ledger.record("done", job=job.id, state="completed")

    def failed(job: corral.Job, exc: BaseException, will_retry: bool) -> None:
        if not will_retry:
            ledger.record("done", job=job.id, state="failed", reason=str(exc))

    def stalled(job_id: str) -> None:
        ledger.record("stalled", job=job_id)

    def error(exc: BaseException) -> None:
        job = lock_lost_job(str(exc)) if isinstance(exc, corral.LockLostError) else None
        if job is not None:
            ledger.record("refused", job=job)
        else:
            ledger.record("error", kind=type(exc).__name__, msg=str(exc)[:300])

    worker.on("completed", completed)
    worker.on("failed", failed)
    worker.on("stalled", stalled)
    worker.on("error", error)
    return worker


async def main(args: argparse.Namespace) -> None:
    worker = build(args)
    writer("worker").record("ready")
    await worker.run(handle_signals=True)
    writer("worker").record("stopped")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(parse()))
