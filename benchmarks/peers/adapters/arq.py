"""arq with its defaults: the worker polls its sorted set every 0.5 s (poll_delay) and reads
at most max(5 * max_jobs, 100) job ids per poll, which caps throughput near 200 jobs/s."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import run_worker

from adapters.common import REDIS_URL, done

NAME = "arq"
BULK = False
HIGH = 10  # max_jobs (asyncio tasks)

_url = urlsplit(REDIS_URL)
SETTINGS = RedisSettings(host=_url.hostname or "127.0.0.1", port=_url.port or 6379,
                         database=int(_url.path.strip("/") or 0))


async def noop(ctx: Any, payload: Any) -> None:
    done(payload)


class Producer:
    async def open(self) -> None:
        self.pool = await create_pool(SETTINGS)

    async def add(self, payload: Any) -> None:
        await self.pool.enqueue_job("noop", payload)

    async def add_delayed(self, payload: Any, seconds: float) -> None:
        await self.pool.enqueue_job("noop", payload, _defer_by=timedelta(seconds=seconds))

    async def close(self) -> None:
        await self.pool.aclose()


def worker(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "adapters.arq", str(concurrency)]


def pending(r: Any) -> int:
    return int(r.zcard("arq:queue"))


def settled(r: Any, n: int) -> int:
    return sum(1 for _ in r.scan_iter("arq:result:*", count=5000))  # kept 3600 s by default


if __name__ == "__main__":
    class Settings:
        functions = (noop,)
        redis_settings = SETTINGS
        max_jobs = int(sys.argv[1])
        handle_signals = True

    run_worker(Settings)  # type: ignore[arg-type]
