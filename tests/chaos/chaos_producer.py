"""A producer process for the chaos tests: `python -m tests.chaos.chaos_producer URL QUEUE ...`.

Adds jobs `<prefix><i>` for i in [start, start + count) with `add_bulk`, `batch` at a
time, and records a batch in the ledger only after `add_bulk` returned. A store that is
away (BackendUnavailableError) is waited out and the same batch is added again: ids make
that idempotent. With `--max-waiting`, it holds off while that many jobs wait.
Any other exception ends the process with a traceback (which the test looks for).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

import orjson

import corral

from .ledger import writer


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chaos_producer")
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--prefix", default="j")
    parser.add_argument("--name", default="short")
    parser.add_argument("--data", default='{"ms": 10}', help="JSON data of every job")
    parser.add_argument("--options", default='{"remove_on_complete": false, '
                        '"remove_on_fail": false}', help="JSON keyword options of add")
    parser.add_argument("--max-waiting", type=int, default=0, help="0: never hold off")
    return parser.parse_args(argv)


async def retrying(call: Any) -> Any:
    """Await `call()` until the store answers."""
    while True:
        try:
            return await call()
        except corral.BackendUnavailableError as exc:
            writer("producer").record("unavailable", msg=str(exc)[:200])
            await asyncio.sleep(0.25)


async def hold_off(queue: corral.Queue, limit: int) -> None:
    """Wait while more than `limit` jobs wait (polling: the backlog is in another process)."""
    while (await retrying(queue.counts))["waiting"] > limit:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    ledger = writer("producer")
    data = orjson.loads(args.data)
    options: dict[str, Any] = orjson.loads(args.options)
    async with corral.Queue(args.queue, url=args.url) as queue:
        ledger.record("ready")
        end = args.start + args.count
        for first in range(args.start, end, args.batch):
            if args.max_waiting:
                await hold_off(queue, args.max_waiting)
            ids = [f"{args.prefix}{i}" for i in range(first, min(first + args.batch, end))]
            specs = [corral.JobSpec(args.name, data, job_id=job_id, **options) for job_id in ids]
            await retrying(lambda specs=specs: queue.add_bulk(specs))
            ledger.record("added", jobs=ids)
        ledger.record("finished", t_done=time.time())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(parse()))
