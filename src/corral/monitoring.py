"""What a queue reports about itself: per-minute statistics and its live workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from corral.backends.base import MinuteMetrics, WorkerRecord
from corral.clock import to_datetime

__all__ = ["MinuteStats", "WorkerInfo"]


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """What finished in one minute: counts, and processing and wait times in ms."""

    minute: datetime
    completed: int
    failed: int
    processing_ms_avg: float
    processing_ms_max: int
    wait_ms_avg: float
    wait_ms_max: int

    @classmethod
    def from_record(cls, record: MinuteMetrics) -> MinuteStats:
        """From the stored record."""
        finished = max(1, record.completed + record.failed)
        minute = to_datetime(record.minute)
        assert minute is not None
        return cls(minute, record.completed, record.failed,
                   record.processing_ms_total / finished, record.processing_ms_max,
                   record.wait_ms_total / finished, record.wait_ms_max)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {"minute": self.minute.isoformat(), "completed": self.completed,
                "failed": self.failed, "processing_ms_avg": self.processing_ms_avg,
                "processing_ms_max": self.processing_ms_max, "wait_ms_avg": self.wait_ms_avg,
                "wait_ms_max": self.wait_ms_max}


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker of a queue, as it registered itself."""

    id: str
    host: str
    pid: int
    queue: str
    concurrency: int
    started_at: datetime
    last_heartbeat: datetime

    @classmethod
    def from_record(cls, record: WorkerRecord) -> WorkerInfo:
        """From the stored record."""
        info = orjson.loads(record.info)
        started, beat = to_datetime(record.started_at), to_datetime(record.heartbeat_at)
        assert started is not None
        assert beat is not None
        return cls(record.id, info["host"], info["pid"], info["queue"], info["concurrency"],
                   started, beat)
