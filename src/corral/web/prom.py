"""`/metrics`: Prometheus text read from the store at scrape time.

Each app has its own `CollectorRegistry` holding one `StoreCollector`; nothing is added to
prometheus-client's global registry, so two apps in one process (or a user's own metrics)
never collide. A scrape first reads the store (async), then renders that snapshot.

What the store keeps decides what can be exported honestly:

- Job counts per state and the paused flag are read as they are: gauges.
- Completed and failed totals: the store keeps per-minute counts (for 7+ days), not
  all-time totals, and a sum over a sliding window falls as old minutes age out, which
  Prometheus would read as counter resets. So this process turns the per-minute counts it
  reads into true counters: it adds what each minute gained since the previous scrape.
  A counter starts with the last hour's jobs on the first scrape of a process (like any
  exporter restart, `rate()` and `increase()` handle that) and stays monotonic after.
- Processing time: the store keeps, per minute, the sum and the maximum of processing
  times, not their distribution, so no histogram bucket (`le="0.5"`) could be filled
  truthfully. It is exported as a summary without quantiles (`_count`, `_sum`, in
  seconds; `rate(_sum) / rate(_count)` is the mean) plus a gauge of the longest job of the
  last five minutes. Wait time (added to taken) is exported the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from corral.errors import CorralError
from corral.job_state import JobState
from corral.monitoring import MinuteStats
from corral.web.context import WebContext

__all__ = ["PrometheusExporter", "StoreCollector"]

FIRST_LOOK: Final = timedelta(hours=1)
"""How far back the first scrape of a process reads per-minute counts."""
SETTLE: Final = timedelta(minutes=10)
"""A minute is read again until it is this old, as late finishes may still land in it."""
MAX_WINDOW: Final = timedelta(minutes=5)
"""The window of the `..._max_seconds` gauges."""


@dataclass
class _Totals:
    """Monotonic totals of one queue, built from per-minute counts."""

    completed: int = 0
    failed: int = 0
    processing_ms: float = 0.0
    wait_ms: float = 0.0
    seen: dict[float, MinuteStats] = field(default_factory=dict)
    """The minutes read last time that may still change, by their epoch seconds."""
    watermark: float | None = None
    """Epoch seconds before which every minute has been counted for good."""

    def add(self, minutes: list[MinuteStats]) -> None:
        """Count what each minute gained since it was last seen."""
        for minute in minutes:
            key = minute.minute.timestamp()
            before = self.seen.get(key)
            self.completed += minute.completed - (before.completed if before else 0)
            self.failed += minute.failed - (before.failed if before else 0)
            self.processing_ms += _sum(minute, "processing") - _sum(before, "processing")
            self.wait_ms += _sum(minute, "wait") - _sum(before, "wait")
            self.seen[key] = minute


def _sum(minute: MinuteStats | None, what: str) -> float:
    if minute is None:
        return 0.0
    average: float = getattr(minute, f"{what}_ms_avg")
    return average * (minute.completed + minute.failed)


@dataclass
class _QueueSnapshot:
    name: str
    counts: dict[str, int]
    paused: bool
    workers: int
    totals: _Totals
    processing_max_ms: int


@dataclass
class _Snapshot:
    up: bool
    queues: list[_QueueSnapshot] = field(default_factory=list)


class StoreCollector(Collector):
    """Renders the snapshot the exporter read from the store for the current scrape."""

    def __init__(self) -> None:
        self.snapshot = _Snapshot(up=False)

    def collect(self) -> Iterator[Metric]:
        """The metric families of the snapshot."""
        snapshot = self.snapshot
        yield GaugeMetricFamily("corral_up", "1 when the store answered this scrape",
                                value=1 if snapshot.up else 0)
        jobs = GaugeMetricFamily("corral_jobs", "Jobs in the store by queue and state",
                                 labels=["queue", "state"])
        paused = GaugeMetricFamily("corral_queue_paused", "1 when the queue is paused",
                                   labels=["queue"])
        workers = GaugeMetricFamily("corral_workers", "Live workers of the queue",
                                    labels=["queue"])
        completed = CounterMetricFamily(
            "corral_jobs_completed", "Jobs completed (counted by this exporter, see docs)",
            labels=["queue"])
        failed = CounterMetricFamily(
            "corral_jobs_failed", "Jobs failed for good (counted by this exporter, see docs)",
            labels=["queue"])
        processing = SummaryMetricFamily(
            "corral_job_processing_seconds", "Time from a job's start to its end",
            labels=["queue"])
        waiting = SummaryMetricFamily(
            "corral_job_wait_seconds", "Time from a job being due to being taken",
            labels=["queue"])
        processing_max = GaugeMetricFamily(
            "corral_job_processing_max_seconds",
            "Longest processing time among jobs finished in the last 5 minutes",
            labels=["queue"])
        for queue in snapshot.queues:
            for state in JobState:
                jobs.add_metric([queue.name, state.value], queue.counts.get(state.value, 0))
            paused.add_metric([queue.name], 1 if queue.paused else 0)
            workers.add_metric([queue.name], queue.workers)
            totals, finished = queue.totals, queue.totals.completed + queue.totals.failed
            completed.add_metric([queue.name], totals.completed)
            failed.add_metric([queue.name], totals.failed)
            processing.add_metric([queue.name], finished, totals.processing_ms / 1000)
            waiting.add_metric([queue.name], finished, totals.wait_ms / 1000)
            processing_max.add_metric([queue.name], queue.processing_max_ms / 1000)
        yield from (jobs, paused, workers, completed, failed, processing, waiting,
                    processing_max)


class PrometheusExporter:
    """One app's registry and the totals it keeps between scrapes."""

    def __init__(self, context: WebContext) -> None:
        self.context = context
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = StoreCollector()
        self.registry.register(self.collector)
        self._totals: dict[str, _Totals] = {}
        self._lock = asyncio.Lock()  # one scrape at a time: totals are updated in place

    async def render(self) -> bytes:
        """Read the store and render the Prometheus text format."""
        async with self._lock:
            try:
                self.collector.snapshot = await self._read()
            except CorralError:
                self.collector.snapshot = _Snapshot(up=False)
            return generate_latest(self.registry)

    async def _read(self) -> _Snapshot:
        snapshot = _Snapshot(up=True)
        for name in await self.context.queue_names():
            queue = await self.context.queue(name)
            totals = self._totals.setdefault(name, _Totals())
            now = self.context.clock.now()
            since = now - FIRST_LOOK
            if totals.watermark is not None:
                since = max(now - timedelta(days=7),
                            datetime.fromtimestamp(totals.watermark, UTC))
            minutes = await queue.metrics(since=since, until=now)
            totals.add(minutes)
            settled = (now - SETTLE).timestamp()
            totals.seen = {key: m for key, m in totals.seen.items() if key >= settled}
            totals.watermark = settled
            recent = [m for m in minutes if m.minute >= now - MAX_WINDOW]
            snapshot.queues.append(_QueueSnapshot(
                name=name, counts=await queue.counts(), paused=await queue.is_paused(),
                workers=len(await queue.workers()), totals=totals,
                processing_max_ms=max((m.processing_ms_max for m in recent), default=0),
            ))
        return snapshot
