"""Scenario 7: network faults between the workers and Redis, through `proxy.FaultProxy`
(full run only): 300 ms of added latency each way, then an 8 s blackhole, then resets of
every connection. Nothing is lost, and no worker is hung 30 s after the fault heals."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from .conftest import Results, redis_store
from .harness import Harness, counts, full_only, needs_redis, snapshot, wait_for
from .ledger import Report, read_ledger, reconcile
from .proxy import FaultProxy

LOCK = 2.0
STALLED = 1.0
JOBS = 3_000
JOB_MS = 20
QUEUE = "network"
HEALED_WITHIN = 30.0

pytestmark = [full_only, needs_redis, pytest.mark.chaos]


@pytest.mark.timeout(600)
def test_latency_blackhole_and_resets_lose_nothing(
    harness: Harness, tmp_path: Path, results: Results
) -> None:
    store = redis_store(harness, tmp_path)
    assert store.redis_port is not None
    proxy = FaultProxy(store.redis_port)
    proxy.start()
    try:
        through = f"redis://127.0.0.1:{proxy.port}/0"
        workers = [harness.worker(through, QUEUE, concurrency=4, lock=LOCK, stalled=STALLED)
                   for _ in range(3)]
        harness.wait_ready(workers)
        # The producer talks to Redis directly: the faults are the workers'.
        producer = harness.producer(store.url, QUEUE, count=JOBS, batch=50, max_waiting=300,
                                    data=orjson.dumps({"ms": JOB_MS}).decode())
        wait_for(lambda: counts(store.url, QUEUE).get("completed", 0) >= JOBS // 10, 120,
                 "the run is under way")
        proxy.latency = 0.3
        time.sleep(6)
        proxy.latency = 0.0
        proxy.blackhole(True)
        time.sleep(8)
        proxy.reset_all()
        proxy.blackhole(False)
        for _ in range(3):
            time.sleep(1.5)
            proxy.reset_all()
        healed_at = time.time()

        def drained() -> bool:
            now = counts(store.url, QUEUE)
            return (not producer.alive() and bool(now)
                    and now["waiting"] == now["active"] == now["delayed"] == 0)

        wait_for(drained, 300, "every job finished")
        alive = sum(1 for proc in workers if proc.alive())
        harness.terminate(workers)
    finally:
        proxy.close()

    lines = read_ledger(harness.ledger)
    report = Report("7 network faults (proxy)", "redis",
                    f"{JOBS:,} jobs × {JOB_MS} ms; +300 ms each way 6 s, blackhole 8 s, "
                    "4 resets")
    reconcile(report, lines, snapshot(store.url, QUEUE))
    first_start = {
        pid: min(line.t for line in lines if line.ev == "start" and line.pid == pid
                 and line.t > healed_at) - healed_at
        for pid in {proc.pid for proc in workers}
        if any(line.ev == "start" and line.pid == pid and line.t > healed_at for line in lines)
    }
    slowest = max(first_start.values(), default=float("inf"))
    errors = sum(1 for line in lines if line.ev == "error")
    report.extra.update({
        "workers working again": f"{len(first_start)}/3",
        "slowest back": f"{slowest:.1f} s after heal",
        "connections": str(proxy.connections), "reset": str(proxy.resets),
        "worker error events": str(errors),
    })
    report.check(report.completed == JOBS, f"{report.completed} of {JOBS} completed")
    report.check(alive == 3, f"{3 - alive} workers died")
    report.check(len(first_start) == 3 and slowest <= HEALED_WITHIN,
                 f"a worker was hung after the heal: {first_start}")
    crashed = harness.crashed()
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)
