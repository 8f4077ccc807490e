"""Adding jobs: states, duplicate ids, stale settings, order of claiming, key layout."""

from __future__ import annotations

import pytest
import redis

from corral.backends import open_backend
from corral.backends.base import Backend, Limits, StoredConfig
from corral.backends.redis import RedisBackend
from corral.errors import InvalidOptionError
from tests.backends.protocol.support import T0, add, claim, ids, new_job


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
