"""bullmq for Python: a port of BullMQ sharing its Redis layout and Lua scripts."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bullmq import Queue, Worker

from adapters.common import QUEUE, REDIS_URL, done

NAME = "bullmq-py"
BULK = True  # Queue.addBulk
HIGH = 10  # Worker option "concurrency" (asyncio tasks)


class Producer:
    async def open(self) -> None:
        self.queue = Queue(QUEUE, {"connection": REDIS_URL})

    async def add(self, payload: Any) -> None:
        await self.queue.add("noop", payload)

    async def add_bulk(self, payloads: list[Any]) -> None:
        await self.queue.addBulk([{"name": "noop", "data": p} for p in payloads])

    async def add_delayed(self, payload: Any, seconds: float) -> None:
        await self.queue.add("noop", payload, {"delay": round(seconds * 1000)})

    async def close(self) -> None:
        await self.queue.close()


def worker(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "adapters.bullmq_py", str(concurrency)]


def pending(r: Any) -> int:
    return int(r.llen(f"bull:{QUEUE}:wait"))


def settled(r: Any, n: int) -> int:
    return int(r.zcard(f"bull:{QUEUE}:completed"))


async def _job(job: Any, token: str) -> None:
    done(job.data)


async def _work(concurrency: int) -> None:
    Worker(QUEUE, _job, {"connection": REDIS_URL, "concurrency": concurrency})
    await asyncio.Event().wait()  # until the driver ends the process


if __name__ == "__main__":
    asyncio.run(_work(int(sys.argv[1])))
