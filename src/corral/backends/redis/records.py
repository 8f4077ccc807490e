"""Translation between the protocol's records and what the scripts store and return.

A job is stored as one MessagePack map (encoded by Lua's cmsgpack; a JSON record written
by an earlier version reads the same) in the queue's `jobs` hash, with its data in the
`data` hash. Data, options, progress and return values stay JSON *text* inside the
record, so the scripts never re-encode a user's numbers.

Flows (see `lua/_flows.lua`): a child's record holds `parent` {q, id, p, n, ig} (the
parent's queue, id and key prefix, the child's place among its children, and ig: its
failure is ignored); a parent's holds `kids` (children added) and `pending`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import msgpack
import orjson

from corral.backends.base import (
    ChildRecord,
    Claimed,
    Complete,
    DedupeRule,
    Fail,
    FlowJob,
    JobRecord,
    Limits,
    NewJob,
    Outcome,
    ParentRef,
    Release,
    Retention,
    RetryLater,
    ScheduleRecord,
)
from corral.job_state import JobState


def text(value: bytes | str) -> str:
    """A reply's string (replies are bytes: the clients do not decode)."""
    return value if isinstance(value, str) else value.decode()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def ids(value: Any) -> list[str]:
    """A JSON array of strings from cjson, which encodes an empty array as `{}`."""
    return value if isinstance(value, list) else []


_STATES: Final = {state.value: state for state in JobState}


def _parent(ref: Any) -> ParentRef | None:
    if not isinstance(ref, dict):
        return None
    return ParentRef(ref["q"], ref["id"], bool(ref.get("ig")))


def decode(raw: bytes) -> dict[str, Any]:
    """A stored job record as a dict."""
    if raw[:1] == b"{":
        return cast(dict[str, Any], orjson.loads(raw))
    return cast(dict[str, Any], msgpack.unpackb(raw))


def to_record(job_id: bytes | str, raw: bytes, data: bytes | str | None) -> JobRecord:
    """A record from its stored form and data."""
    rec = decode(raw)
    get = rec.get
    parent = get("parent")
    # Positional, in JobRecord's field order: this runs for every job claimed.
    return JobRecord(
        text(job_id), rec["name"], "null" if data is None else text(data), rec["options"],
        _STATES[rec["state"]], rec["priority"], get("attempts_made", 0),
        get("stalled_count", 0), get("progress"), get("return_value"), get("failed_reason"),
        get("stacktrace"), rec["created_at"], get("processed_at"), get("finished_at"),
        get("run_at"), tuple(ids(get("tags"))), get("group"), get("lock_token"),
        None if parent is None else _parent(parent), get("pending", 0),
    )


def created(job: NewJob, state: bytes | str, run_at: int | None, now: int) -> JobRecord:
    """The record of a job add.lua has just written: what the caller sent it, with the
    state and run_at the script gave it."""
    return JobRecord(
        job.id, job.name, job.data, job.options, _STATES[text(state)], job.priority, 0, 0,
        None, None, None, None, now, None, None, run_at, job.tags, job.group,
        parent=job.parent,
    )


def added(jobs: Sequence[NewJob], reply: Sequence[Any], now: int) -> list[tuple[JobRecord, bool]]:
    """Each job of an add.lua reply with whether it was created (see its Output)."""
    out = []
    for job, i in zip(jobs, range(1, len(reply), 4), strict=True):
        if reply[i]:
            out.append((created(job, reply[i + 2], _int(reply[i + 3]), now), True))
        else:
            out.append((to_record(reply[i + 1], reply[i + 2], reply[i + 3]), False))
    return out


def child(raw: bytes | str) -> ChildRecord:
    """A parent's record of one child, from its stored JSON {q, id, s, rv, fr}."""
    stored = orjson.loads(raw)
    return ChildRecord(
        stored["q"], stored["id"], stored["s"], stored.get("rv"), stored.get("fr")
    )


def triples(reply: Sequence[Any], start: int = 0) -> list[JobRecord]:
    """Records from a flat reply of (id, record, data) triples."""
    return [
        to_record(reply[i], reply[i + 1], reply[i + 2]) for i in range(start, len(reply), 3)
    ]


def claimed(reply: Sequence[Any]) -> list[Claimed]:
    """The jobs a settle claimed, from its reply after the summary."""
    return [Claimed(record, record.lock_token or "") for record in triples(reply, 1)]


def _keep(completed: Retention, failed: Retention) -> dict[str, int]:
    rules = {
        "cc": completed.count, "ca": completed.age_ms, "fc": failed.count, "fa": failed.age_ms,
    }
    return {name: value for name, value in rules.items() if value is not None}


def _dedupe(rule: DedupeRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    item: dict[str, Any] = {"key": rule.key, "replace": rule.replace}
    if rule.ttl_ms is not None:
        item["ttl"] = rule.ttl_ms
    return item


def _new_job(job: NewJob) -> dict[str, Any]:
    # Absent rather than null: cjson would decode null to a sentinel, not nil.
    item: dict[str, Any] = {
        "id": job.id, "name": job.name, "data": job.data, "options": job.options,
        "priority": job.priority,
    }
    optional = {
        "lifo": job.lifo or None, "delay": job.delay_ms, "run_at": job.run_at_ms,
        "tags": list(job.tags) or None, "group": job.group,
        "keep": _keep(job.keep_completed, job.keep_failed) or None,
        "dedupe": _dedupe(job.dedupe),
    }
    item.update((name, value) for name, value in optional.items() if value is not None)
    return item


def encode_jobs(jobs: Sequence[NewJob]) -> bytes:
    """The `jobs` argument of add.lua."""
    return orjson.dumps([_new_job(job) for job in jobs])


def encode_flow(
    jobs: Sequence[FlowJob], blocks: Sequence[str], prefix_of: Callable[[str], str]
) -> bytes:
    """The `jobs` argument of add_flow.lua: each job with its queue (name and block of
    KEYS), its parent ref (with the parent queue's key prefix and the child's place among
    its children) and its number of children. `blocks`: the queues in KEYS order."""
    block = {queue: index for index, queue in enumerate(blocks, 1)}  # Lua counts from 1
    places: dict[tuple[str, str], int] = {}
    encoded = []
    for flow_job in jobs:
        job = flow_job.job
        item = _new_job(job)
        item.pop("dedupe", None)
        item["queue"] = flow_job.queue
        item["b"] = block[flow_job.queue]
        if job.children:
            item["kids"] = job.children
        if job.parent is not None:
            ref = job.parent
            place = places[ref.queue, ref.id] = places.get((ref.queue, ref.id), 0) + 1
            parent: dict[str, Any] = {
                "q": ref.queue, "id": ref.id, "p": prefix_of(ref.queue), "n": place,
            }
            if ref.ignore_failure:
                parent["ig"] = True
            item["parent"] = parent
            item["pb"] = block[ref.queue]
        encoded.append(item)
    return orjson.dumps(encoded)


def encode_job(job: NewJob) -> bytes:
    """The `job` argument of fire_schedule.lua."""
    return orjson.dumps(_new_job(job))


def schedule(schedule_id: bytes | str, raw: bytes | str) -> ScheduleRecord:
    """A schedule from its stored JSON."""
    stored = orjson.loads(raw)
    return ScheduleRecord(
        id=text(schedule_id),
        spec=stored["spec"],
        next_run=_int(stored.get("next_run")),
        last_run=_int(stored.get("last_run")),
        count=int(stored.get("count", 0)),
        version=int(stored["version"]),
    )


def _outcome(outcome: Outcome) -> list[Any]:
    match outcome:
        case Complete():
            return ["complete", outcome.job_id, outcome.token, outcome.return_value]
        case Fail():
            return ["fail", outcome.job_id, outcome.token, outcome.reason, outcome.stacktrace]
        case RetryLater():
            return [
                "retry", outcome.job_id, outcome.token, outcome.reason, outcome.stacktrace,
                outcome.delay_ms,
            ]
        case Release():
            return ["release", outcome.job_id, outcome.token, outcome.hold_ms]


def encode_limits(limits: Limits) -> list[str | int]:
    """The limit arguments of set_config.lua, in its order ("" for none), then the event
    level."""
    values = (
        limits.rate_limit, limits.rate_per_ms, limits.concurrency, limits.group_rate_limit,
        limits.group_rate_per_ms, limits.group_concurrency,
    )
    return ["" if value is None else value for value in values] + [limits.events]


def encode_outcomes(outcomes: Sequence[Outcome]) -> bytes:
    """The `outcomes` argument of settle.lua."""
    return orjson.dumps([_outcome(outcome) for outcome in outcomes])
