"""Huey on SQLite (SqliteHuey): the embedded peer; its consumer polls the file.
One consumer, -k thread -w C, default polling (-d 0.1 s, growing to -m 10 s when idle)."""

from __future__ import annotations

import os
import sys
from typing import Any

from huey import SqliteHuey

from adapters.common import QUEUE, RUN_DIR, done

NAME = "huey-sqlite"
BULK = False
HIGH = 10

huey = SqliteHuey(QUEUE, filename=os.path.join(RUN_DIR, "huey.db"))


@huey.task()
def noop(payload: Any) -> None:
    done(payload)


class Producer:
    def add(self, payload: Any) -> None:
        noop(payload)

    def add_delayed(self, payload: Any, seconds: float) -> None:
        noop.schedule(args=(payload,), delay=seconds)


def worker(concurrency: int) -> list[str]:
    consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
    return [consumer, "adapters.huey_sqlite.huey", "-k", "thread", "-w", str(concurrency), "-q"]


def pending(r: Any) -> int:
    return int(huey.pending_count())


def reset() -> None:
    huey.flush()
