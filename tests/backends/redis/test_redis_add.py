"""Adding jobs: states, duplicate ids, stale settings, order of claiming, key layout."""

from __future__ import annotations

import pytest
import redis

from corral.backends import open_backend
from corral.backends.base import Backend, Limits, StoredConfig
from corral.backends.redis import RedisBackend
from corral.errors import InvalidOptionError
from corral.job_state import JobState
from tests.backends.redis.redis_support import T0, add, claim, ids, new_job


def test_is_a_backend_opened_by_url() -> None:
    store: Backend = open_backend("redis://user:secret@127.0.0.1:1/0?connect_timeout=2")
    assert isinstance(store, RedisBackend)
    assert store.kind == "redis"
    assert store.settings.connect_timeout == 2
    assert "secret" not in store.settings.display
    assert "connect_timeout" not in store.settings.url
    assert store.settings.url.startswith("redis://user:secret@127.0.0.1:1/0")


def test_cluster_and_tls_urls() -> None:
    cluster = RedisBackend(
        "redis+cluster://127.0.0.1:7000?allow_eviction=1", {"allow_eviction": "1"}
    )
    assert (cluster.settings.cluster, cluster.settings.url) == (True, "redis://127.0.0.1:7000")
    assert cluster.settings.allow_eviction
    tls = RedisBackend("rediss://h:6380/2?socket_keepalive=true", {"socket_keepalive": "true"})
    assert tls.settings.url == "rediss://h:6380/2?socket_keepalive=true"


@pytest.mark.parametrize(
    "params",
    [{"connect_timeout": "soon"}, {"connect_timeout": "0"}, {"allow_eviction": "maybe"}],
)
def test_bad_url_parameters_are_refused_at_construction(params: dict[str, str]) -> None:
    with pytest.raises(InvalidOptionError):
        RedisBackend("redis://127.0.0.1:1/0", params)


def test_sentinel_urls_are_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidOptionError, match="sentinel"):
        open_backend("redis+sentinel://127.0.0.1:26379/mymaster")


async def test_add_returns_records_in_input_order(backend: RedisBackend) -> None:
    result = await backend.add(
        "q",
        [
            new_job("now"),
            new_job("later", delay_ms=5000),
            new_job("at", run_at_ms=T0 + 60_000),
            new_job("past", run_at_ms=T0 - 1),
            new_job("tagged", tags=("a", "b"), group="g", priority=3),
        ],
        0,
        T0,
    )
    assert result.now_ms == T0
    assert not result.stale_config
    states = [(rec.id, rec.state, rec.run_at, created) for rec, created in result.records]
    assert states == [
        ("now", JobState.WAITING, None, True),
        ("later", JobState.DELAYED, T0 + 5000, True),
        ("at", JobState.DELAYED, T0 + 60_000, True),
        ("past", JobState.WAITING, T0 - 1, True),
        ("tagged", JobState.WAITING, None, True),
    ]
    stored = await backend.get_job("q", "tagged")
    assert stored == result.records[4][0]
    assert stored is not None
    assert (stored.tags, stored.group, stored.priority) == (("a", "b"), "g", 3)
    assert stored.created_at == T0


async def test_without_a_virtual_clock_the_server_time_is_used(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    seconds, micros = raw.time()
    result = await backend.add("q", [new_job("a", delay_ms=1000)], 0, None)
    server_ms = seconds * 1000 + micros // 1000
    assert server_ms <= result.now_ms < server_ms + 5000
    (record, _), = result.records
    assert record.run_at == result.now_ms + 1000


async def test_payloads_survive_byte_for_byte(backend: RedisBackend) -> None:
    data = '{"big": 12345678901234567890, "f": 0.1, "s": "é\\u0000/\\"", "n": null}'
    await add(backend, new_job("ü:1/x", data=data, options='{"attempts": 3}', tags=("t/é",)))
    job = await backend.get_job("q", "ü:1/x")
    assert job is not None
    assert (job.data, job.options, job.tags) == (data, '{"attempts": 3}', ("t/é",))


async def test_an_id_still_stored_returns_that_job_unchanged(backend: RedisBackend) -> None:
    await add(backend, new_job("a", data='{"v": 1}'))
    await backend.settle("q", [], 1, 1000, "w", T0)  # now active
    result = await backend.add("q", [new_job("a", data='{"v": 2}'), new_job("b")], 0, T0 + 5)
    (first, created_first), (_, created_second) = result.records
    assert (first.data, first.state, created_first, created_second) == (
        '{"v": 1}', JobState.ACTIVE, False, True,
    )


async def test_a_duplicate_within_one_bulk_returns_the_first(backend: RedisBackend) -> None:
    result = await backend.add("q", [new_job("a", data="1"), new_job("a", data="2")], 0, T0)
    assert [(r.data, created) for r, created in result.records] == [("1", True), ("1", False)]
    assert (await backend.counts("q"))["waiting"] == 1


async def test_a_stale_config_version_writes_nothing(backend: RedisBackend) -> None:
    stale = await backend.add("q", [new_job("a")], 1, T0)
    assert (stale.records, stale.stale_config) == ([], True)
    assert await backend.get_config("q") == StoredConfig(None, 0)
    assert await backend.queue_names() == []
    assert await backend.set_config("q", '{"concurrency": 2}', Limits()) == 1
    assert await backend.set_config("q", '{"concurrency": 3}', Limits()) == 2
    assert (await backend.add("q", [new_job("a")], 1, T0)).stale_config
    assert not (await backend.add("q", [new_job("a")], 2, T0)).stale_config
    assert await backend.get_config("q") == StoredConfig('{"concurrency": 3}', 2)
    assert await backend.get_job("q", "a") is not None


async def test_queues_are_listed_once_used(backend: RedisBackend) -> None:
    await add(backend, new_job("a"), queue="mail")
    await backend.set_config("billing", "{}", Limits())
    await backend.set_paused("reports", True)
    assert await backend.queue_names() == ["billing", "mail", "reports"]


async def test_claim_order_is_priority_then_fifo_with_lifo_first(backend: RedisBackend) -> None:
    await add(backend, new_job("p1-a", priority=1), new_job("p0-a"), new_job("p0-b"))
    await add(backend, new_job("p0-lifo", lifo=True), new_job("p0-c"), now=T0 + 1)
    await add(backend, new_job("p0-lifo2", lifo=True), new_job("p1-lifo", priority=1, lifo=True))
    expected = ["p0-lifo2", "p0-lifo", "p0-a", "p0-b", "p0-c", "p1-lifo", "p1-a"]
    listed = await backend.list_jobs("q", "waiting", 0, 100)
    assert [job.id for job in listed] == expected
    assert ids(await claim(backend, 3)) == expected[:3]
    assert ids(await claim(backend, 10)) == expected[3:]


async def test_extreme_priorities_keep_their_order(backend: RedisBackend) -> None:
    top, bottom = -(2**21), 2**21
    await add(
        backend, new_job("low", priority=bottom), new_job("mid"), new_job("high", priority=top)
    )
    await add(backend, new_job("low2", priority=bottom), new_job("high2", priority=top))
    assert ids(await claim(backend, 10)) == ["high", "high2", "mid", "low", "low2"]


async def test_positions_restart_when_the_queue_empties(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"), new_job("b"))
    assert raw.hget("corral:{q}:meta", "seq") == b"2"
    await claim(backend, 2)
    await add(backend, new_job("c"))
    assert raw.hget("corral:{q}:meta", "seq") == b"3"  # jobs still active: no restart
    (c,) = await claim(backend, 1)
    await backend.settle("q", [], 0, 1000, "w", T0 + 10**6)
    await backend.recover_stalled("q", 0, T0 + 10**6)  # all three fail: nothing left
    await add(backend, new_job("d"), new_job("e", lifo=True))
    assert raw.hmget("corral:{q}:meta", ["seq", "lseq"]) == [b"1", b"1"]
    assert ids(await claim(backend, 5)) == ["e", "d"]
    assert c.record.id == "c"


async def test_queues_are_separate(backend: RedisBackend) -> None:
    await add(backend, new_job("a"), queue="one")
    await add(backend, new_job("a", data="other"), queue="two")
    assert ids(await claim(backend, 5, queue="one")) == ["a"]
    assert (await backend.counts("two"))["waiting"] == 1


async def test_every_key_of_a_queue_shares_its_hash_tag(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a", tags=("t",)), new_job("d", delay_ms=5), queue="mail")
    (a,) = await claim(backend, 1, queue="mail")
    await backend.add_log("mail", "a", "hello", 10)
    await backend.set_config("mail", "{}", Limits())
    keys = sorted(key.decode() for key in raw.keys("*"))  # type: ignore[union-attr]
    assert "corral:queues" in keys
    queue_keys = [key for key in keys if key != "corral:queues"]
    assert queue_keys
    assert all(key.startswith("corral:{mail}:") for key in queue_keys)
    assert a.token
