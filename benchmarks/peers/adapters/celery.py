"""Celery with the Redis broker and no result backend. Concurrency 1: --pool solo;
more: --pool threads -c C (one process; the prefork pool would start C processes)."""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery

from adapters.common import QUEUE, REDIS_URL, done

NAME = "celery"
BULK = False  # group() still publishes one message per task
HIGH = 10

app = Celery("bench", broker=REDIS_URL)
app.conf.task_default_queue = QUEUE
app.conf.worker_hijack_root_logger = False


@app.task(name="noop", ignore_result=True)
def noop(payload: Any) -> None:
    done(payload)


class Producer:
    def add(self, payload: Any) -> None:
        noop.delay(payload)

    def add_delayed(self, payload: Any, seconds: float) -> None:
        noop.apply_async((payload,), countdown=seconds)


def worker(concurrency: int) -> list[str]:
    pool = ["--pool", "solo"] if concurrency == 1 else ["--pool", "threads", "-c", str(concurrency)]
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    return [celery, "-A", "adapters.celery", "worker", *pool, "-Q", QUEUE, "-l", "warning",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def pending(r: Any) -> int:
    return int(r.llen(QUEUE))
