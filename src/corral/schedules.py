"""Schedules: cron and fixed-interval ticks, computed here and fired by workers.

The store keeps each schedule's spec and next run; a worker that sees a tick due
computes the following one here and fires the tick with one compare-and-set
transition, so a tick adds its job once however many processes race for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import croniter

from corral import codec
from corral.backends.base import ScheduleRecord
from corral.clock import to_datetime, to_ms
from corral.errors import InvalidOptionError
from corral.options import JobOptions, check_int, check_label, parse_duration

__all__ = ["Schedule", "ScheduleSpec"]

MAX_SCHEDULE_ID: Final = 200  # leaves room in the tick's job id `schedule:<id>:<ms>`
_NOT_IN_SCHEDULES: Final = frozenset({"job_id", "delay", "run_at", "dedupe"})


def _check_cron(expression: object) -> str:
    if not isinstance(expression, str):
        raise InvalidOptionError(f"cron must be a string, not {expression!r}")
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidOptionError(
            f"cron {expression!r} needs 5 fields (minute hour day month weekday) "
            "or 6 (with seconds first)"
        )
    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        raise InvalidOptionError(f"cron {expression!r} is not a valid expression")
    return " ".join(fields)


def _check_zone(tz: object) -> str:
    if not isinstance(tz, str):
        raise InvalidOptionError(f"tz must be an IANA time zone name, not {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidOptionError(f"unknown time zone {tz!r}: use an IANA name") from None
    return tz


def _moment_ms(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidOptionError(f"{name} must be an aware datetime, not {value!r}")
    return to_ms(value)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule fires and when; validated by `parse`."""

    cron: str | None
    every_ms: int | None
    tz: str
    job_name: str
    data: Any
    options: JobOptions
    start_ms: int | None
    end_ms: int | None
    limit: int | None

    @classmethod
    def parse(
        cls,
        schedule_id: str,
        *,
        cron: str | None = None,
        every: float | timedelta | str | None = None,
        tz: str = "UTC",
        job_name: str | None = None,
        data: Any = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ScheduleSpec:
        """Validate `queue.schedule(...)`'s arguments."""
        check_label(schedule_id, "schedule id")
        if len(schedule_id) > MAX_SCHEDULE_ID:
            raise InvalidOptionError(f"schedule id must be at most {MAX_SCHEDULE_ID} characters")
        if (cron is None) == (every is None):
            raise InvalidOptionError("give exactly one of cron= and every=")
        every_ms = None
        if every is not None:
            every_ms = math.ceil(parse_duration(every, "every", allow_zero=False) * 1000)
        refused = _NOT_IN_SCHEDULES & set(options or {})
        if refused:
            raise InvalidOptionError(
                "not allowed in a schedule (each tick is its own job): "
                + ", ".join(sorted(refused))
            )
        start_ms, end_ms = _moment_ms(start, "start"), _moment_ms(end, "end")
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise InvalidOptionError("end must be later than start")
        codec.check_json(data, "data")
        return cls(
            cron=None if cron is None else _check_cron(cron),
            every_ms=every_ms,
            tz=_check_zone(tz),
            job_name=check_label(schedule_id if job_name is None else job_name, "job_name"),
            data=data,
            options=JobOptions.from_mapping(options or {}),
            start_ms=start_ms,
            end_ms=end_ms,
            limit=None if limit is None else check_int(limit, "limit", minimum=1),
        )

    def to_text(self) -> str:
        """Canonical JSON: identical arguments give identical text."""
        return orjson.dumps(
            {
                "cron": self.cron, "every_ms": self.every_ms, "tz": self.tz,
                "job_name": self.job_name, "data": self.data, "options": self.options.to_json(),
                "start_ms": self.start_ms, "end_ms": self.end_ms, "limit": self.limit,
            },
            option=orjson.OPT_SORT_KEYS,
        ).decode()

    @classmethod
    def from_text(cls, text: str) -> ScheduleSpec:
        """A spec from its stored text."""
        raw = orjson.loads(text)
        return cls(
            cron=raw["cron"], every_ms=raw["every_ms"], tz=raw["tz"], job_name=raw["job_name"],
            data=raw["data"], options=JobOptions.from_json(raw["options"]),
            start_ms=raw["start_ms"], end_ms=raw["end_ms"], limit=raw["limit"],
        )

    def _cron_after(self, after_ms: int) -> int:
        """The first cron instant strictly after `after_ms`."""
        assert self.cron is not None
        moment = to_datetime(after_ms)
        assert moment is not None
        seconds_first = len(self.cron.split()) == 6
        found = croniter(
            self.cron, moment.astimezone(ZoneInfo(self.tz)), second_at_beginning=seconds_first
        ).get_next(datetime)
        return to_ms(found)

    def _bounded(self, run_ms: int, count: int) -> int | None:
        if self.limit is not None and count >= self.limit:
            return None
        if self.end_ms is not None and run_ms > self.end_ms:
            return None
        return run_ms

    def first_run(self, now_ms: int) -> int | None:
        """The first tick of a new (or changed) schedule upserted at `now_ms`."""
        begin = now_ms if self.start_ms is None else max(now_ms, self.start_ms)
        if self.every_ms is not None:
            return self._bounded(begin, 0)  # `every` fires once at once, then every period
        return self._bounded(self._cron_after(begin - 1 if begin > now_ms else begin), 0)

    def run_after(self, due_ms: int, now_ms: int, count: int) -> int | None:
        """The tick after the one due at `due_ms` fired at `now_ms` (missed ticks skipped)."""
        if self.every_ms is not None:
            periods = max(1, (now_ms - due_ms) // self.every_ms + 1)
            return self._bounded(due_ms + periods * self.every_ms, count)
        return self._bounded(self._cron_after(max(due_ms, now_ms)), count)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as stored, with its next and last run (what `queue.schedules()` lists)."""

    id: str
    cron: str | None
    every: timedelta | None
    tz: str
    job_name: str
    data: Any
    options: JobOptions
    start: datetime | None
    end: datetime | None
    limit: int | None
    next_run: datetime | None
    last_run: datetime | None
    count: int

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> Schedule:
        """A schedule from its stored record."""
        spec = ScheduleSpec.from_text(record.spec)
        return cls(
            id=record.id, cron=spec.cron,
            every=None if spec.every_ms is None else timedelta(milliseconds=spec.every_ms),
            tz=spec.tz, job_name=spec.job_name, data=spec.data, options=spec.options,
            start=to_datetime(spec.start_ms), end=to_datetime(spec.end_ms), limit=spec.limit,
            next_run=to_datetime(record.next_run), last_run=to_datetime(record.last_run),
            count=record.count,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values (the HTTP API's schedule shape)."""
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "id": self.id, "cron": self.cron,
            "every": None if self.every is None else self.every.total_seconds(),
            "tz": self.tz, "job_name": self.job_name, "data": self.data,
            "options": self.options.to_json(), "start": iso(self.start), "end": iso(self.end),
            "limit": self.limit, "next_run": iso(self.next_run), "last_run": iso(self.last_run),
            "count": self.count,
        }


def tick_job_id(schedule_id: str, due_ms: int) -> str:
    """The id of the job a tick adds: `schedule:<id>:<epoch ms>`."""
    return f"schedule:{schedule_id}:{due_ms}"
