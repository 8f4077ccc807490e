"""corral on the bench Redis: the system this harness exists for (defaults throughout)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import corral
import corral.sync
from adapters.common import QUEUE, REDIS_URL, done

NAME = "corral-redis"
BULK = True  # Queue.add_bulk
HIGH = 10  # Worker concurrency (asyncio tasks)
URL = REDIS_URL
_admin: dict[str, corral.sync.Queue] = {}


class Producer:
    url = URL

    async def open(self) -> None:
        self.queue = corral.Queue(QUEUE, url=self.url)
        await self.queue.ping()

    async def add(self, payload: Any) -> None:
        await self.queue.add("noop", payload)

    async def add_bulk(self, payloads: list[Any]) -> None:
        await self.queue.add_bulk([corral.JobSpec("noop", p) for p in payloads])

    async def add_delayed(self, payload: Any, seconds: float) -> None:
        await self.queue.add("noop", payload, delay=seconds)

    async def close(self) -> None:
        await self.queue.close()


def admin(url: str) -> corral.sync.Queue:
    """The driver's connection to the bench queue, opened once per run."""
    if url not in _admin:
        _admin[url] = corral.sync.Queue(QUEUE, url=url)
    return _admin[url]


def counts(url: str) -> dict[str, int]:
    return admin(url).counts()


def unsettled(url: str) -> int:
    """Jobs not finished yet (finished ones are trimmed to the newest 1000 by default)."""
    left = counts(url)
    return left["waiting"] + left["active"] + left["delayed"]


def worker(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "adapters.corral_redis", str(concurrency)]


def pending(r: Any) -> int:
    return counts(URL)["waiting"]


def settled(r: Any, n: int) -> int:
    return n - unsettled(URL)


async def _job(job: corral.Job) -> None:
    done(job.data)


async def work(url: str, concurrency: int) -> None:
    """The worker process: run until SIGTERM."""
    await corral.Worker(QUEUE, _job, url=url, concurrency=concurrency).run(handle_signals=True)


if __name__ == "__main__":
    asyncio.run(work(URL, int(sys.argv[1])))
