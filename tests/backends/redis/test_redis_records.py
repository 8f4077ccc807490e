"""How the Redis store keeps job records: MessagePack, with JSON records of earlier
versions still read, changed and deleted as before."""

from __future__ import annotations

from typing import cast

import orjson
import redis

from corral.backends.base import Complete, Retention
from corral.backends.redis import RedisBackend, records
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, new_job


def key(part: str) -> str:
    return f"corral:{{q}}:{part}"


def stored(raw: redis.Redis, job_id: str) -> bytes:
    return cast(bytes, raw.hget(key("jobs"), job_id))


def as_json(raw: redis.Redis, job_id: str) -> None:
    """Store the job's record as JSON, as a version before MessagePack left it."""
    raw.hset(key("jobs"), job_id, orjson.dumps(records.decode(stored(raw, job_id))))


async def test_records_are_messagepack_maps(backend: RedisBackend, raw: redis.Redis) -> None:
    await add(backend, new_job("a", tags=("t",), group="g"))
    record = stored(raw, "a")
    assert record[:1] != b"{"
    decoded = records.decode(record)
    assert decoded["state"] == "waiting"
    assert decoded["tags"] == ["t"]
    assert decoded["group"] == "g"
    assert decoded["options"] == "{}"


async def test_a_json_record_of_an_earlier_version_reads_runs_and_is_rewritten(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a", tags=("t",)), new_job("b"))
    as_json(raw, "a")
    assert stored(raw, "a")[:1] == b"{"
    job = await backend.get_job("q", "a")
    assert job is not None
    assert (job.state.value, job.tags) == ("waiting", ("t",))
    (held, other) = await claim(backend, 2)
    assert [held.record.id, other.record.id] == ["a", "b"]
    assert stored(raw, "a")[:1] != b"{"  # its first change stored it as MessagePack
    result = await backend.settle("q", [Complete("a", held.token, "7")], 0, LOCK_MS, "w", T0)
    assert result.refused == []
    done = await backend.get_job("q", "a")
    assert done is not None
    assert (done.state.value, done.return_value) == ("completed", "7")


async def test_retention_deletes_json_records_with_their_tags(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    keep_one = Retention(1, None)
    await add(backend, new_job("a", tags=("t",), keep_completed=keep_one),
              new_job("b", keep_completed=keep_one))
    (held_a, held_b) = await claim(backend, 2)
    await backend.settle("q", [Complete("a", held_a.token, "null")], 0, LOCK_MS, "w", T0)
    as_json(raw, "a")  # completed, with its tag entry
    # b's completion trims `completed` to one job: a goes, read from its JSON record.
    await backend.settle("q", [Complete("b", held_b.token, "null")], 0, LOCK_MS, "w", T0 + 1)
    assert raw.hexists(key("jobs"), "a") == 0
    assert raw.zrange(key("tags"), 0, -1) == []
    assert [job.id for job in await backend.list_jobs("q", "completed", 0, 10)] == ["b"]
