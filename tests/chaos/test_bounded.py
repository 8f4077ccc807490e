"""Scenario 8: memory and disk stay bounded (full run only). 200,000 tiny jobs with the
default retention: Redis `used_memory` and the SQLite database file, measured with the
queue drained after a warm-up of 40,000 jobs and again after the rest, are no more than
20 % apart. The SQLite WAL is reported beside it: SQLite keeps a WAL file at its largest
size (corral sets no `journal_size_limit`), so it is held to a fixed cap instead."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
import redis

from .conftest import Results, Store
from .harness import Harness, Proc, counts, full_only, snapshot, wait_for
from .ledger import Report, read_ledger, reconcile

TOTAL = 200_000
WARM_UP = 40_000
QUEUE = "bounded"
GROWTH_LIMIT = 0.20
WAL_CAP = 64 * 2**20

pytestmark = [full_only, pytest.mark.chaos]


def footprint(store: Store) -> int:
    """Bytes the store uses: Redis `used_memory`, or the SQLite database file."""
    if store.redis_port is not None:
        with redis.Redis(port=store.redis_port) as client:
            return int(client.info("memory")["used_memory"])
    assert store.db_path is not None
    return store.db_path.stat().st_size


def wal_size(store: Store) -> int:
    """Bytes of the SQLite WAL file (0 for Redis, or when there is none)."""
    wal = Path(f"{store.db_path}-wal")
    return wal.stat().st_size if store.db_path is not None and wal.exists() else 0


def produce(harness: Harness, store: Store, start: int, count: int) -> Proc:
    return harness.producer(store.url, QUEUE, start=start, count=count, batch=1000,
                            max_waiting=5000, data=orjson.dumps({"quiet": True}).decode(),
                            options="{}")  # the default retention


def drain(store: Store, producer: Proc) -> None:
    def drained() -> bool:
        now = counts(store.url, QUEUE)
        return (not producer.alive() and bool(now)
                and now["waiting"] == now["active"] == now["delayed"] == 0)

    wait_for(drained, 900, "the queue drained", every=1.0)
    assert producer.popen.returncode == 0


class Sampler:
    """Samples the footprint every second from a thread (for the figures only)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.values: list[int] = []
        self.wal: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.values.append(footprint(self.store))
                self.wal.append(wal_size(self.store))
            except (OSError, redis.RedisError):
                continue


@pytest.mark.timeout(2400)
def test_memory_and_disk_stay_flat(store: Store, harness: Harness, results: Results) -> None:
    workers = [harness.worker(store.url, QUEUE, concurrency=50, lock=30, stalled=30)
               for _ in range(2)]
    harness.wait_ready(workers)
    drain(store, produce(harness, store, 0, WARM_UP))
    time.sleep(1)
    after_warm_up, wal_after_warm_up = footprint(store), wal_size(store)
    with Sampler(store) as sampler:
        started = time.monotonic()
        drain(store, produce(harness, store, WARM_UP, TOTAL - WARM_UP))
        rate = (TOTAL - WARM_UP) / (time.monotonic() - started)
    time.sleep(1)
    at_end, wal_at_end = footprint(store), wal_size(store)
    harness.terminate(workers)

    report = Report("8 memory and disk bounded", store.kind,
                    f"{TOTAL:,} tiny jobs, default retention, 2×50 slots")
    reconcile(report, read_ledger(harness.ledger), snapshot(store.url, QUEUE))
    growth = at_end / after_warm_up - 1
    what = "used_memory" if store.kind == "redis" else "database file"
    peak = max(sampler.values, default=at_end)
    report.extra.update({
        f"{what} after warm-up": f"{after_warm_up / 2**20:.1f} MiB",
        "at end": f"{at_end / 2**20:.1f} MiB ({growth:+.0%})",
        "peak while running": f"{peak / 2**20:.1f} MiB",
        "throughput": f"{rate:,.0f} jobs/s", "runs not recorded": "quiet jobs",
    })
    if store.kind == "sqlite":
        wal_peak = max([wal_at_end, *sampler.wal])
        report.extra["WAL after warm-up / end / peak"] = (
            f"{wal_after_warm_up / 2**20:.1f} / {wal_at_end / 2**20:.1f} / "
            f"{wal_peak / 2**20:.1f} MiB")
        report.check(wal_peak <= WAL_CAP, f"the WAL reached {wal_peak / 2**20:.0f} MiB")
    report.check(report.acked == TOTAL, f"{report.acked} of {TOTAL} acked")
    report.check(report.completed == TOTAL, f"{report.completed} of {TOTAL} completed")
    report.check(growth <= GROWTH_LIMIT, f"{what} grew {growth:.0%} after the warm-up")
    crashed = [p for p in harness.crashed() if p.role != "redis"]
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)
