"""Scenarios 2 and 4: the redis-server itself fails mid-run (full run only).

2. SIGSTOP it for 5 s, then SIGCONT: nothing lost, no worker crashes, every worker resumes.
4. `kill -9` it and start it again on the same data directory: with `appendonly yes`, no
   acknowledged job is lost (`appendfsync always` and `everysec`); without AOF the loss is
   measured (see the package docstring for why).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest

from .conftest import Results, redis_store
from .harness import (
    Harness,
    Proc,
    RedisOptions,
    counts,
    full_only,
    needs_redis,
    snapshot,
    start_redis_server,
    wait_for,
)
from .ledger import Report, read_ledger, reconcile

LOCK = 2.0
STALLED = 1.0
JOBS = 3_000
JOB_MS = 20

pytestmark = [full_only, needs_redis, pytest.mark.chaos]


def start_run(harness: Harness, url: str, queue: str) -> tuple[list[Proc], Proc]:
    """Three workers and a producer paced by the backlog (so that the run lasts)."""
    workers = [harness.worker(url, queue, concurrency=4, lock=LOCK, stalled=STALLED)
               for _ in range(3)]
    harness.wait_ready(workers)
    producer = harness.producer(url, queue, count=JOBS, batch=50, max_waiting=300,
                                data=orjson.dumps({"ms": JOB_MS}).decode())
    return workers, producer


def drained(url: str, queue: str, producer: Proc) -> bool:
    if producer.alive():
        return False
    now = counts(url, queue)
    return bool(now) and now["waiting"] == now["active"] == now["delayed"] == 0


def starts_after(harness: Harness, moment: float) -> set[int]:
    return {line.pid for line in read_ledger(harness.ledger)
            if line.ev == "start" and line.t > moment}


@pytest.mark.timeout(600)
def test_sigstop_redis_for_5_s(harness: Harness, tmp_path: Path, results: Results) -> None:
    store = redis_store(harness, tmp_path)
    assert store.redis is not None
    queue = "sigstop"
    workers, producer = start_run(harness, store.url, queue)
    wait_for(lambda: counts(store.url, queue).get("completed", 0) >= JOBS // 4, 120, "mid-run")
    harness.signal(store.redis, signal.SIGSTOP)
    time.sleep(5)
    harness.signal(store.redis, signal.SIGCONT)
    resumed_at = time.time()
    wait_for(lambda: drained(store.url, queue, producer), 300, "every job finished")
    alive = sum(1 for proc in workers if proc.alive())
    resumed = starts_after(harness, resumed_at) & {proc.pid for proc in workers}
    harness.terminate(workers)

    report = Report("2 SIGSTOP redis 5 s", "redis",
                    f"{JOBS:,} jobs × {JOB_MS} ms, 3×4 slots, lock {LOCK:g} s")
    reconcile(report, read_ledger(harness.ledger), snapshot(store.url, queue))
    errors = sum(1 for line in read_ledger(harness.ledger) if line.ev == "error")
    report.extra.update({"workers alive": f"{alive}/3", "resumed": f"{len(resumed)}/3",
                         "worker error events": str(errors)})
    report.check(report.completed == JOBS, f"{report.completed} of {JOBS} completed")
    report.check(alive == 3, f"{3 - alive} workers crashed")
    report.check(len(resumed) == 3, f"only {len(resumed)} workers resumed")
    crashed = harness.crashed()
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)


PERSISTENCE = {
    "AOF always": RedisOptions(appendonly=True, appendfsync="always"),
    "AOF everysec": RedisOptions(appendonly=True, appendfsync="everysec"),
    "no AOF (RDB defaults)": RedisOptions(appendonly=False, save="3600 1 300 100 60 10000"),
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("persistence", list(PERSISTENCE))
def test_kill_9_redis_and_restart_on_its_data(
    harness: Harness, tmp_path: Path, results: Results, persistence: str
) -> None:
    options = PERSISTENCE[persistence]
    store = redis_store(harness, tmp_path, options)
    assert store.redis is not None
    assert store.redis_port is not None
    assert store.data_dir is not None
    queue = "redis-kill"
    workers, producer = start_run(harness, store.url, queue)
    wait_for(lambda: counts(store.url, queue).get("completed", 0) >= JOBS // 3, 120, "mid-run")
    harness.signal(store.redis, signal.SIGKILL)
    killed_at = time.time()
    time.sleep(0.5)
    start_redis_server(harness, store.data_dir, store.redis_port, options)
    down_for = time.time() - killed_at
    wait_for(lambda: drained(store.url, queue, producer), 300, "every job finished")
    alive = sum(1 for proc in workers if proc.alive())
    harness.terminate(workers)

    report = Report(f"4 kill -9 redis, {persistence}", "redis",
                    f"{JOBS:,} jobs × {JOB_MS} ms, 3×4 slots")
    reconcile(report, read_ledger(harness.ledger), snapshot(store.url, queue),
              measure_loss=not options.appendonly)
    report.extra.update({"redis down": f"{down_for:.1f} s", "workers alive": f"{alive}/3"})
    if options.appendonly:
        report.check(report.completed == report.acked,
                     f"{report.completed} of {report.acked} completed")
    else:
        report.extra["lost without AOF (measured)"] = f"{report.lost:,}"
    report.check(alive == 3, f"{3 - alive} workers crashed")
    crashed = [p for p in harness.crashed() if p.role != "redis"]
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)
