"""SAQ (asyncio, Redis; the worker blocks on BLMOVE). Its `scheduled` takes whole epoch
seconds and its worker promotes scheduled jobs once a second, so delays are coarse."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any

from saq import Queue, Worker

from adapters.common import QUEUE, REDIS_URL, done

NAME = "saq"
BULK = False  # Queue.map waits for the results: not a fire-and-forget bulk add
HIGH = 10  # Worker concurrency (asyncio tasks; 10 is its default)


async def noop(ctx: Any, *, payload: Any) -> None:
    done(payload)


class Producer:
    async def open(self) -> None:
        self.queue = Queue.from_url(REDIS_URL, name=QUEUE)
        await self.queue.connect()

    async def add(self, payload: Any) -> None:
        await self.queue.enqueue("noop", payload=payload)

    async def add_delayed(self, payload: Any, seconds: float) -> None:
        when = math.ceil(time.time() + seconds)  # whole seconds, never before the delay
        await self.queue.enqueue("noop", payload=payload, scheduled=when)

    async def close(self) -> None:
        await self.queue.disconnect()


def worker(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "adapters.saq", str(concurrency)]


def pending(r: Any) -> int:
    return int(r.llen(f"saq:{QUEUE}:queued"))


def settled(r: Any, n: int) -> int:
    return n - int(r.zcard(f"saq:{QUEUE}:incomplete"))  # a finished job leaves `incomplete`


async def _work(concurrency: int) -> None:
    queue = Queue.from_url(REDIS_URL, name=QUEUE)
    await Worker(queue, functions=[noop], concurrency=concurrency).start()


if __name__ == "__main__":
    asyncio.run(_work(int(sys.argv[1])))
