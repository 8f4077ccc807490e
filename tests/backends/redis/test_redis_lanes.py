"""The scripts' fast path: packed FCALL of one function library (EVALSHA where Redis has
no functions) on connections of the backend's own, and only the helpers a script reaches
pasted into it when it runs as a script."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import redis
import redis.asyncio

from corral.backends.redis import RedisBackend, scripts
from corral.backends.redis.keys import queue_keys
from tests.backends.protocol.support import add, claim, new_job
from tests.redis_server import start_redis, stop_redis

_DEFINED = re.compile(r"^(?:local\s+function\s+(\w+)|local\s+(\w+)|(\w+)\s*=)", re.MULTILINE)
_CALLED = re.compile(r"(?<![.:\w])([A-Za-z_]\w*)\s*\(")


def _helper_names() -> set[str]:
    folder = Path(scripts.__file__).parent / "lua"
    found: set[str] = set()
    for path in folder.glob("_*.lua"):
        for match in _DEFINED.finditer(path.read_text()):
            found.add(next(group for group in match.groups() if group))
    return found


@pytest.mark.parametrize("name", scripts.names())
def test_a_script_gets_every_helper_it_calls(name: str) -> None:
    text = scripts.source(name).text
    defined = {next(g for g in m.groups() if g) for m in _DEFINED.finditer(text)}
    missing = {
        called for called in _CALLED.findall(text)
        if called in _helper_names() and called not in defined
    }
    assert not missing, f"{name}.lua calls helpers it was not given: {sorted(missing)}"


def test_a_script_gets_only_the_helpers_it_reaches() -> None:
    extend = scripts.source("extend_locks").text
    assert "local function load_job" in extend
    assert "local function claim_jobs" not in extend  # settle's, from _claim
    assert "local function delete_many" not in extend


def test_the_packed_command_is_the_redis_protocol() -> None:
    src = scripts.source("counts")
    keys = src.key_names(queue_keys("q"))
    packed_keys = b"".join(b"$%d\r\n%b\r\n" % (len(key), key.encode()) for key in keys)
    calls = scripts.AsyncScripts(redis.asyncio.Redis())
    sha = scripts.sha1(src.text).encode()
    assert calls._head("counts", [queue_keys("q")], False) == (
        b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$1\r\n6\r\n" % (3 + len(keys), sha)
        + packed_keys
    )
    function = scripts.library().function("counts").encode()
    assert calls._head("counts", [queue_keys("q")], True) == (
        b"*%d\r\n$5\r\nFCALL\r\n$%d\r\n%b\r\n$1\r\n6\r\n"
        % (3 + len(keys), len(function), function) + packed_keys
    )
    assert scripts.bulk(12) == b"$2\r\n12\r\n"
    assert scripts.bulk("é") == b"$2\r\n\xc3\xa9\r\n"
    assert scripts.bulk(b"") == b"$0\r\n\r\n"


async def test_functions_flushed_from_redis_are_loaded_again(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"))
    assert raw.function_list(library=scripts.library().prefix[:-1])
    raw.function_flush()
    raw.script_flush()
    await add(backend, new_job("b"))
    assert (await backend.counts("q"))["waiting"] == 2


async def test_without_functions_the_scripts_run_instead(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    # Redis 6, or an ACL without FUNCTION: the first refusal turns the client to EVALSHA.
    raw.acl_setuser("nofn", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-function"])
    try:
        port = raw.connection_pool.connection_kwargs["port"]
        user = RedisBackend(f"redis://nofn@127.0.0.1:{port}/0", {})
        raw.function_flush()
        await add(user, new_job("a"))
        await add(user, new_job("b"))
        assert (await user.counts("q"))["waiting"] == 2
        assert raw.function_list() == []
        await user.close()
    finally:
        raw.acl_deluser("nofn")


async def test_concurrent_calls_use_connections_of_their_own(backend: RedisBackend) -> None:
    await asyncio.gather(*(add(backend, new_job(f"j{i}")) for i in range(20)))
    assert (await backend.counts("q"))["waiting"] == 20
    assert {job.record.id for job in await claim(backend, 20)} == {f"j{i}" for i in range(20)}


async def test_a_restart_while_idle_costs_no_call(tmp_path: Path) -> None:
    port, process = await asyncio.to_thread(start_redis, tmp_path / "one")
    store = RedisBackend(f"redis://127.0.0.1:{port}/0", {"connect_timeout": "2"})
    try:
        await add(store, new_job("a"))
        await asyncio.to_thread(stop_redis, process)
        _, process = await asyncio.to_thread(start_redis, tmp_path / "two", port=port)
        await asyncio.sleep(0.05)  # the loop sees the old connection closed
        # No call failed in between: the idle connection is found closed and replaced.
        await add(store, new_job("b"))
        assert (await store.counts("q"))["waiting"] == 1
    finally:
        await store.close()
        await asyncio.to_thread(stop_redis, process)
