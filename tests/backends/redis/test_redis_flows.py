"""Flows and hash tags on Redis: where the keys and the child records live, the registry of
tags, and what the scripts do under the hood (behaviour shared with SQLite is in
tests/backends/protocol/test_flows.py)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import redis
from redis.crc import key_slot

from corral.backends.base import (
    Complete,
    Fail,
    FlowJob,
    Limits,
    Outcome,
    ParentRef,
    Release,
    Retention,
)
from corral.backends.redis import RedisBackend, records
from corral.backends.redis.keys import HASH_TAGS, REGISTRY, queue_keys
from corral.errors import InvalidOptionError
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, ids, new_job

P = "parents"


def parent(job_id: str, children: int, queue: str = P, **changes: Any) -> FlowJob:
    return FlowJob(queue, new_job(job_id, children=children, **changes))


def child(job_id: str, of: str = "p", queue: str = "q", parent_queue: str = P,
          **changes: Any) -> FlowJob:
    return FlowJob(queue, new_job(job_id, parent=ParentRef(parent_queue, of), **changes))


async def add_flow(backend: RedisBackend, *jobs: FlowJob) -> None:
    versions = {job.queue: (await backend.get_config(job.queue)).version for job in jobs}
    assert not (await backend.add_flow(list(jobs), versions, T0)).stale_config


async def complete_all(backend: RedisBackend, queue: str = "q", now: int = T0 + 10) -> None:
    held = await claim(backend, 100, now, queue)
    outcomes = [Complete(c.record.id, c.token, "null") for c in held]
    assert (await backend.settle(queue, outcomes, 0, LOCK_MS, "w", now)).refused == []


def stored(raw: redis.Redis, queue: str, job_id: str, tag: str | None = None) -> Any:
    found = raw.hget(queue_keys(queue, tag)["jobs"], job_id)
    return None if found is None else records.decode(cast(bytes, found))


# -- hash tags --------------------------------------------------------------------------


async def test_a_tagged_queue_lives_under_its_tag(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    backend.use_hash_tag("mail", "flow")
    await add(backend, new_job("a", tags=("t",)), new_job("d", delay_ms=5), queue="mail")
    (a,) = await claim(backend, 1, queue="mail")
    await backend.add_log("mail", "a", "hello", 10)
    await backend.set_config("mail", "{}", Limits())
    await backend.settle("mail", [Complete("a", a.token, "1")], 0, LOCK_MS, "w", T0 + 1)
    assert await backend.get_logs("mail", "a") == ["hello"]
    assert [e.type for e in await backend.read_events("mail", "0", 10, 0)] == [
        "added", "added", "completed",
    ]
    keys = {key.decode() for key in raw.keys("*")}  # type: ignore[union-attr]
    assert keys - {REGISTRY, HASH_TAGS}
    assert all(key.startswith("corral:{flow}:mail:") for key in keys - {REGISTRY, HASH_TAGS})
    assert raw.hgetall(HASH_TAGS) == {b"mail": b"flow"}
    assert queue_keys("mail", "flow")["jobs"] == "corral:{flow}:mail:jobs"
    assert backend.keys("other")["jobs"] == "corral:{other}:jobs"


def test_queues_sharing_a_tag_share_a_slot() -> None:
    slots = {key_slot(queue_keys(q, "deal")[part].encode())
             for q in ("contracts", "messages") for part in ("jobs", "deps", "marker")}
    assert len(slots) == 1
    assert key_slot(queue_keys("contracts")["jobs"].encode()) != key_slot(
        queue_keys("messages")["jobs"].encode()
    )


@pytest.mark.parametrize("tag", ["", "{x}", "a}b", "a{", "line\nbreak", 5])
def test_bad_hash_tags_are_refused(backend: RedisBackend, tag: Any) -> None:
    with pytest.raises(InvalidOptionError, match="hash_tag"):
        backend.use_hash_tag("q", tag)


async def test_queue_names_load_the_recorded_tags(
    backend: RedisBackend, redis_url: str
) -> None:
    backend.use_hash_tag("mail", "flow")
    await add(backend, new_job("a"), queue="mail")
    await add(backend, new_job("b"), queue="plain")
    dashboard = RedisBackend(redis_url, {})
    try:
        assert await dashboard.get_job("mail", "a") is None  # it does not know the tag yet
        assert await dashboard.queue_names() == ["mail", "plain"]
        dashboard.use_hash_tag("mail", None)  # a Queue made without a tag keeps the recorded one
        job = await dashboard.get_job("mail", "a")
        assert job is not None
        assert (await dashboard.counts("mail"))["waiting"] == 1
        assert await dashboard.get_job("plain", "b") is not None
    finally:
        await dashboard.close()


async def test_obliterate_forgets_the_tag(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.use_hash_tag("mail", "flow")
    await add(backend, new_job("a"), queue="mail")
    await backend.obliterate("mail", False)
    assert raw.hgetall(HASH_TAGS) == {}
    assert raw.smembers(REGISTRY) == set()
    assert raw.keys("*") == []


async def test_a_new_tag_is_recorded_with_the_next_write(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"), queue="mail")
    assert raw.hgetall(HASH_TAGS) == {}
    backend.use_hash_tag("mail", "flow")
    await add(backend, new_job("b"), queue="mail")
    assert raw.hgetall(HASH_TAGS) == {b"mail": b"flow"}


def test_check_flow_accepts_any_queues_on_one_redis(backend: RedisBackend) -> None:
    backend.check_flow(["a", "b", "c"])


# -- child records ---------------------------------------------------------------------


async def test_the_records_of_a_flow(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.use_hash_tag(P, "t")
    backend.use_hash_tag("q", "t")
    await add_flow(backend, parent("p", 2, group="g"), child("c1"), child("c2"))
    keys = backend.keys(P)
    assert keys["deps"] == "corral:{t}:parents:deps"
    records = raw.hgetall(keys["deps"])
    assert {field: json.loads(value) for field, value in records.items()} == {
        b"p\x001": {"q": "q", "id": "c1", "s": "pending"},
        b"p\x002": {"q": "q", "id": "c2", "s": "pending"},
    }
    p = stored(raw, P, "p", "t")
    assert (p["state"], p["kids"], p["pending"]) == ("waiting-children", 2, 2)
    assert raw.zrange(keys["waiting-children"], 0, -1) == [b"p"]
    assert stored(raw, "q", "c2", "t")["parent"] == {
        "q": P, "id": "p", "p": "corral:{t}:parents:", "n": 2,
    }
    await complete_all(backend)
    assert json.loads(raw.hget(keys["deps"], "p\x001")) == {  # type: ignore[arg-type]
        "q": "q", "id": "c1", "s": "completed", "rv": "null",
    }
    assert raw.zrange(keys["waiting"], 0, -1) == [b"p"]
    assert raw.zrange(keys["groups"], 0, -1) == [b"g"]  # the parent's queue's group index
    assert ids(await claim(backend, 5, T0 + 20, P)) == ["p"]


async def test_flow_jobs_are_checked_before_anything_is_sent(backend: RedisBackend) -> None:
    bad = [
        ([parent("p", 2), child("c1")], "waits for 2 children"),
        ([child("c1"), parent("p", 1)], "has no parent"),
        ([parent("p", 1), child("c1", of="x")], "does not come before"),
        ([parent("p", 1), child("c1"), child("c1")], "twice"),
        ([], "root"),
    ]
    for jobs, message in bad:
        with pytest.raises(InvalidOptionError, match=message):
            await backend.add_flow(jobs, {P: 0, "q": 0}, T0)
    with pytest.raises(InvalidOptionError, match="config version"):
        await backend.add_flow([parent("p", 1), child("c1")], {P: 0}, T0)
    assert await backend.queue_names() == []


async def test_a_parent_removed_by_retention_takes_its_child_records(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    deps = backend.keys(P)["deps"]
    for n in (1, 2):
        await add_flow(
            backend, parent(f"p{n}", 1, keep_completed=Retention(1, None)),
            child(f"c{n}", of=f"p{n}"),
        )
    await complete_all(backend)
    await complete_all(backend, P, T0 + 20)  # p1 and p2 complete; the trim keeps p2
    assert await backend.get_job(P, "p1") is None
    assert raw.hkeys(deps) == [b"p2\x001"]
    await add_flow(
        backend, parent("p3", 1, keep_completed=Retention(0, None)), child("c3", of="p3")
    )
    await complete_all(backend, now=T0 + 30)
    await complete_all(backend, P, T0 + 40)
    assert await backend.get_job(P, "p3") is None
    assert raw.hkeys(deps) == [b"p2\x001"]


async def test_obliterate_takes_the_child_records(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    await backend.obliterate(P, False)
    assert not raw.exists(backend.keys(P)["deps"])
    await complete_all(backend)  # its parent is gone: left alone
    assert await backend.get_job("q", "c1") is not None


async def test_a_parent_set_going_joins_its_own_queues_group_order(
    backend: RedisBackend,
) -> None:
    # The settle that releases `r` in group "b" of q learns q's head of "b"; the parent, in
    # group "b" of another queue, must not take that for its own queue's.
    await add(backend, new_job("r", group="b"))
    await add(backend, new_job("other", group="a", priority=1), queue=P)
    await add_flow(backend, parent("p", 1, group="b"), child("c1"))
    held = {c.record.id: c.token for c in await claim(backend, 5)}
    outcomes: list[Outcome] = [Release("r", held["r"]), Complete("c1", held["c1"], "null")]
    await backend.settle("q", outcomes, 0, LOCK_MS, "w", T0 + 10)
    assert ids(await claim(backend, 1, T0 + 20, P)) == ["p"]
    assert ids(await claim(backend, 1, T0 + 20, P)) == ["other"]


async def test_a_parent_failing_records_in_its_own_queue(backend: RedisBackend) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    (c1,) = await claim(backend, 1)
    await backend.settle("q", [Fail("c1", c1.token, "boom", None)], 0, LOCK_MS, "w", T0 + 10)
    types = [(e.type, e.job_id) for e in await backend.read_events(P, "0", 10, 0)]
    assert types == [("added", "p"), ("failed", "p")]
    assert [(e.type, e.job_id) for e in await backend.read_events("q", "0", 10, 0)] == [
        ("added", "c1"), ("failed", "c1"),
    ]
    assert [j.id for j in await backend.list_jobs(P, "failed", 0, 10)] == ["p"]
