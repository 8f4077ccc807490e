"""Dramatiq with its Redis broker: one worker process (--processes 1) with C threads."""

from __future__ import annotations

import os
import sys
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from adapters.common import QUEUE, REDIS_URL, done

NAME = "dramatiq"
BULK = False
HIGH = 10  # worker threads

dramatiq.set_broker(RedisBroker(url=REDIS_URL))


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(payload: Any) -> None:
    done(payload)


class Producer:
    def add(self, payload: Any) -> None:
        noop.send(payload)

    def add_delayed(self, payload: Any, seconds: float) -> None:
        noop.send_with_options(args=(payload,), delay=round(seconds * 1000))


def worker(concurrency: int) -> list[str]:
    dramatiq_cli = os.path.join(os.path.dirname(sys.executable), "dramatiq")
    return [dramatiq_cli, "adapters.dramatiq", "--processes", "1", "--threads", str(concurrency),
            "--queues", QUEUE]


def pending(r: Any) -> int:
    return int(r.llen(f"dramatiq:{QUEUE}"))
