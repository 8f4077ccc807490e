"""Scenario 1: `kill -9` a random worker process every few seconds (a supervisor starts
another in its place) while short jobs run on 4 processes: every job completes, none is
lost, duplicates are counted, and each job a killed worker held starts again within
lock duration + 2 × stalled interval."""

from __future__ import annotations

import orjson
import pytest

from .conftest import Results, Store
from .harness import FULL, Harness, Supervisor, counts, sized, snapshot, wait_for
from .ledger import Report, read_ledger, reconcile

LOCK = 2.0
STALLED = 1.0
QUEUE = "kill9"


@pytest.mark.chaos
@pytest.mark.timeout(1200 if FULL else 240)
def test_kill_9_random_workers_loses_no_job(
    store: Store, harness: Harness, results: Results
) -> None:
    jobs = int(sized(1_000, 10_000))
    every = sized(1.0, 2.0)
    job_ms = int(sized(100, 50))

    workers = [harness.worker(store.url, QUEUE, concurrency=4, lock=LOCK, stalled=STALLED)
               for _ in range(4)]
    harness.wait_ready(workers)
    producer = harness.producer(
        store.url, QUEUE, count=jobs, batch=100, data=orjson.dumps({"ms": job_ms}).decode()
    )
    with Supervisor(harness, workers, every, lambda: harness.worker(
            store.url, QUEUE, concurrency=4, lock=LOCK, stalled=STALLED)):
        wait_for(lambda: counts(store.url, QUEUE).get("completed", 0) >= jobs,
                 sized(180, 900), f"{jobs} jobs completed", every=0.5)
    harness.terminate([*workers, producer])

    report = Report("1 kill -9 a worker", store.kind,
                    f"{jobs:,} jobs × {job_ms} ms, 4×4 slots, kill every {every:g} s")
    reconcile(report, read_ledger(harness.ledger), snapshot(store.url, QUEUE))
    bound = LOCK + 2 * STALLED
    report.extra["bound"] = f"{bound:g} s"
    report.check(report.completed == jobs, f"{report.completed} of {jobs} completed")
    report.check(report.failed == 0, f"{report.failed} failed")
    report.check(report.kills >= 3, f"only {report.kills} kills")
    report.check(report.p99 is not None and report.p99 <= bound,
                 f"recovery p99 {report.p99} s over {bound:g} s")
    crashed = harness.crashed()
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)
