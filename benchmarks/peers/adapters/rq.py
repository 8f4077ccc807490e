"""RQ: synchronous, one job at a time per worker process. SimpleWorker runs jobs in the
worker process (the default Worker forks a child per job). Delayed jobs would need the
worker's separate scheduler (--with-scheduler), so the delayed workload is not run."""

from __future__ import annotations

import os
import sys
from typing import Any

from redis import Redis
from rq import Queue

from adapters.common import QUEUE, REDIS_URL, done

NAME = "rq"
BULK = True  # Queue.enqueue_many
HIGH = None  # no concurrency inside one worker process


def noop(payload: Any) -> None:
    done(payload)


class Producer:
    def open(self) -> None:
        self.queue = Queue(QUEUE, connection=Redis.from_url(REDIS_URL))

    def add(self, payload: Any) -> None:
        self.queue.enqueue(noop, payload)

    def add_bulk(self, payloads: list[Any]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, (p,)) for p in payloads])


def worker(concurrency: int) -> list[str]:
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    return [rq, "worker", "--url", REDIS_URL, "-w", "rq.worker.SimpleWorker", QUEUE]


def pending(r: Any) -> int:
    return int(r.llen(f"rq:queue:{QUEUE}"))


def settled(r: Any, n: int) -> int:
    return int(r.zcard(f"rq:finished:{QUEUE}"))
