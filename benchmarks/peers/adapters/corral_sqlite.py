"""corral on its embedded SQLite store (a file in the run directory, WAL, defaults)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from adapters import corral_redis as on_redis
from adapters.common import RUN_DIR

NAME = "corral-sqlite"
BULK = True
HIGH = 10
URL = "sqlite:///" + os.path.abspath(os.path.join(RUN_DIR, "corral.db"))


class Producer(on_redis.Producer):
    url = URL


def worker(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "adapters.corral_sqlite", str(concurrency)]


def pending(r: Any) -> int:
    return on_redis.counts(URL)["waiting"]


def settled(r: Any, n: int) -> int:
    return n - on_redis.unsettled(URL)


def reset() -> None:
    on_redis.admin(URL).obliterate(force=True)


if __name__ == "__main__":
    asyncio.run(on_redis.work(URL, int(sys.argv[1])))
