"""The body of every benchmark job, in every Python system: `done(payload)`.

It counts executions in the worker process and writes to the bench Redis only when the
first job starts and when the N-th one does, so the bookkeeping costs two calls per run:

  bench:first    wall time (s) the first job started
  bench:count    N, written when the N-th job starts
  bench:samples  JSON list of milliseconds, one per payload that carries a stamp:
                 "t"   (wall time just before the add call)  -> start - t     (latency)
                 "due" (t + the job's delay)                  -> start - due   (delayed)
  bench:extra    incremented for each execution beyond N (a duplicate)

The driver (run.py) sets BENCH_REDIS, BENCH_N and BENCH_RUN in the worker's environment.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

import redis

REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
RUN_DIR = os.environ.get("BENCH_RUN", ".")
QUEUE = "bench"
_expected = int(os.environ.get("BENCH_N", "0"))
_client = redis.Redis.from_url(REDIS_URL)
_counter = itertools.count(1)  # next() is atomic under the GIL: safe from worker threads
_samples: list[float] = []


def done(payload: Any) -> None:
    """Record one execution of a benchmark job."""
    now = time.time()
    if isinstance(payload, dict):
        stamp = payload.get("due", payload.get("t"))
        if stamp is not None:
            _samples.append((now - stamp) * 1000.0)
    seen = next(_counter)
    if seen == 1:
        _client.set("bench:first", now, nx=True)
    if seen == _expected:
        with _client.pipeline() as pipe:
            pipe.set("bench:samples", json.dumps(_samples))
            pipe.set("bench:count", seen)
            pipe.execute()
    elif seen > _expected:
        _client.incr("bench:extra")
