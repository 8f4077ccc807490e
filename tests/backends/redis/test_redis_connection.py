"""Reaching Redis: unreachable servers, the eviction policy, ACL users, forks."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import corral
from corral.backends.redis import RedisBackend
from corral.errors import BackendUnavailableError, InvalidOptionError
from tests.backends.protocol.support import add, claim, new_job
from tests.redis_server import free_port, start_redis, stop_redis


@pytest.fixture
def evicting_redis(raw: redis.Redis) -> Iterator[None]:
    """The session's server with an eviction policy for the duration of a test."""
    raw.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield
    finally:
        raw.config_set("maxmemory-policy", "noeviction")


async def test_nothing_listening_is_backend_unavailable_at_once() -> None:
    store = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", {"connect_timeout": "1"})
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1"):
            await store.add("q", [new_job("a")], 0, None)
        with pytest.raises(BackendUnavailableError):
            await store.wait_for_change("q", 0.1)
        with pytest.raises(BackendUnavailableError):
            await asyncio.to_thread(store.lock_keeper().extend_locks, "q", {"a": "t"}, 1, None)
    finally:
        await store.close()
    assert time.monotonic() - started < 3


async def test_a_silent_server_is_backend_unavailable_within_connect_timeout() -> None:
    # A listening socket that never accepts nor answers: the handshake cannot complete.
    server = await asyncio.start_server(lambda r, w: asyncio.sleep(60), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisBackend(f"redis://127.0.0.1:{port}/0", {"connect_timeout": "0.3"})
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError):
            await store.ping()
    finally:
        await store.close()
        server.close()
    assert time.monotonic() - started < 2


async def test_a_queue_reports_an_unreachable_store() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?connect_timeout=1"
    async with corral.Queue("q", url=url) as queue:
        with pytest.raises(BackendUnavailableError):
            await queue.add("task", {})


@pytest.mark.usefixtures("evicting_redis")
async def test_an_evicting_redis_is_refused(redis_url: str) -> None:
    store = RedisBackend(redis_url, {})
    try:
        with pytest.raises(InvalidOptionError, match=r"allkeys-lru.*allow_eviction=1"):
            await store.add("q", [new_job("a")], 0, None)
        with pytest.raises(InvalidOptionError):
            await store.ping()
    finally:
        await store.close()


@pytest.mark.usefixtures("evicting_redis")
async def test_allow_eviction_accepts_the_risk(redis_url: str) -> None:
    url = f"{redis_url}?allow_eviction=1"
    async with corral.Queue("q", url=url) as queue:
        job = await queue.add("task", {"a": 1})
        assert (await queue.counts())["waiting"] == 1
        assert job.data == {"a": 1}


@pytest.mark.usefixtures("redis_url")  # an empty database
async def test_a_refused_config_command_warns_and_goes_on(
    redis_port: int, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    raw.acl_setuser(
        "app", enabled=True, passwords=["+s3cret:pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-config"],
    )
    try:
        store = RedisBackend(f"redis://app:s3cret%3Apw@127.0.0.1:{redis_port}/0", {})
        try:
            with caplog.at_level(logging.WARNING, logger="corral"):
                await add(store, new_job("a"))
            assert "cannot read maxmemory-policy" in caplog.text
            assert "s3cret" not in caplog.text
            assert [c.record.id for c in await claim(store, 1)] == ["a"]
        finally:
            await store.close()
        bad = RedisBackend(f"redis://app:wrong@127.0.0.1:{redis_port}/0", {})
        try:
            with pytest.raises(BackendUnavailableError) as caught:
                await bad.ping()
            assert "wrong" not in str(caught.value)
        finally:
            await bad.close()
    finally:
        raw.acl_deluser("app")


async def test_the_server_restarting_is_survived(tmp_path: Path) -> None:
    port, process = await asyncio.to_thread(start_redis, tmp_path / "one")
    store = RedisBackend(f"redis://127.0.0.1:{port}/0", {"connect_timeout": "1"})
    try:
        await add(store, new_job("a"))
        waiting = asyncio.ensure_future(store.wait_for_change("other", 10))
        await asyncio.to_thread(stop_redis, process)
        with pytest.raises(BackendUnavailableError):
            await store.counts("q")
        with pytest.raises(BackendUnavailableError):
            await asyncio.wait_for(waiting, 5)
        _, process = await asyncio.to_thread(start_redis, tmp_path / "two", port=port)
        await add(store, new_job("b"))  # a fresh connection, and the scripts loaded again
        assert (await store.counts("q"))["waiting"] == 1
        await store.wait_for_change("q", 5)
    finally:
        await store.close()
        await asyncio.to_thread(stop_redis, process)


async def test_a_forked_child_uses_connections_of_its_own(redis_url: str) -> None:
    held = [RedisBackend(redis_url, {})]  # the child lets go of it, as corral.sync does
    try:
        await add(held[0], new_job("parent"))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a loop and connections of its own
            code = 1
            try:
                asyncio.run(add(held[0], new_job("child")))
                held.clear()
                gc.collect()  # collecting the parent's connections must not disturb them
                code = 0
            finally:
                os.write(write, bytes([code]))
                os._exit(code)
        os.close(write)
        status = await asyncio.to_thread(os.read, read, 1)
        os.close(read)
        await asyncio.to_thread(os.waitpid, pid, 0)
        assert status == b"\0"
        assert (await asyncio.wait_for(held[0].counts("q"), 5))["waiting"] == 2
    finally:
        await held[0].close()


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    _, process = await asyncio.to_thread(
        start_redis, tmp_path / "data", "--unixsocket", str(socket_path)
    )
    try:
        async with corral.Queue("q", url=f"unix://{socket_path}?db=3") as queue:
            await queue.add("task", {"via": "unix"})
            assert (await queue.counts())["waiting"] == 1
    finally:
        await asyncio.to_thread(stop_redis, process)


def _self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (directory / name for name in (
        "ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "1", "-subj", "/CN=corral-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_a_tls_url(tmp_path: Path) -> None:
    ca, cert, key = await asyncio.to_thread(_self_signed, tmp_path)
    tls_port = free_port()
    _, process = await asyncio.to_thread(
        start_redis, tmp_path / "data", "--tls-port", str(tls_port), "--tls-cert-file",
        str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "no",
    )
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}&connect_timeout=2"
        async with corral.Queue("q", url=url) as queue:
            await queue.add("task", {"via": "tls"})
            assert (await queue.counts())["waiting"] == 1
        untrusted = f"rediss://127.0.0.1:{tls_port}/0?connect_timeout=2"
        async with corral.Queue("q", url=untrusted) as queue:
            with pytest.raises(BackendUnavailableError, match="certificate"):
                await queue.counts()
    finally:
        await asyncio.to_thread(stop_redis, process)
