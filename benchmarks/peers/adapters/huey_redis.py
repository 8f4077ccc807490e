"""Huey on Redis (RedisHuey: the consumer blocks on BRPOP). One consumer, -k thread -w C."""

from __future__ import annotations

import os
import sys
from typing import Any

from huey import RedisHuey

from adapters.common import QUEUE, REDIS_URL, done

NAME = "huey-redis"
BULK = False  # no bulk enqueue
HIGH = 10  # consumer threads

huey = RedisHuey(QUEUE, url=REDIS_URL)


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
    return [consumer, "adapters.huey_redis.huey", "-k", "thread", "-w", str(concurrency), "-q"]


def pending(r: Any) -> int:
    return int(huey.pending_count())
