"""`corral dashboard`: argument checks (uvicorn replaced), and one real loopback server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from corral.cli import cli
from corral.cli.dashboard import is_loopback

CORRAL = str(Path(sys.executable).with_name("corral"))


class Served:
    """What the command handed to uvicorn.run."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.options: dict[str, Any] = {}

    def __call__(self, app: FastAPI, **options: Any) -> None:
        self.app, self.options = app, options


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Served:
    import uvicorn

    record = Served()
    monkeypatch.setattr(uvicorn, "run", record)
    monkeypatch.delenv("CORRAL_TOKEN", raising=False)
    monkeypatch.setenv("CORRAL_URL", f"sqlite:///{tmp_path}/corral.db")
    return record


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["dashboard", *args], env=env)


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.com", False), ("", False),
])
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_defaults_to_loopback_without_a_token(served: Served) -> None:
    result = invoke()

    assert result.exit_code == 0, result.output
    assert served.options["host"] == "127.0.0.1"
    assert served.options["port"] == 8000
    assert "http://127.0.0.1:8000/" in result.output
    assert served.app is not None
    assert served.app.state.corral.token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_non_loopback_without_a_token_exits_2(served: Served, host: str) -> None:
    result = invoke("--host", host)

    assert result.exit_code == 2
    assert "without a token" in result.output
    assert "--insecure" in result.output
    assert "Traceback" not in result.output
    assert served.app is None


def test_non_loopback_with_insecure(served: Served) -> None:
    result = invoke("--host", "0.0.0.0", "--insecure")

    assert result.exit_code == 0, result.output
    assert served.options["host"] == "0.0.0.0"


def test_non_loopback_with_a_token(served: Served) -> None:
    result = invoke("--host", "0.0.0.0", "--token", "t0k", "--port", "9001", "--read-only",
                    "--public-metrics")

    assert result.exit_code == 0, result.output
    assert served.app is not None
    context = served.app.state.corral
    assert (context.token, context.read_only, context.public_metrics) == ("t0k", True, True)
    assert served.options["port"] == 9001
    assert "t0k" not in result.output


def test_token_from_the_environment(served: Served) -> None:
    result = invoke("--host", "0.0.0.0", env={"CORRAL_TOKEN": "from-env"})

    assert result.exit_code == 0, result.output
    assert served.app is not None
    assert served.app.state.corral.token == "from-env"


@pytest.mark.parametrize("args", [
    ["--token", ""], ["--token", "  "], ["--port", "70000"], ["--url", "mysql://x/y"],
])
def test_mistakes_exit_2(served: Served, args: list[str]) -> None:
    result = invoke(*args)

    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert served.app is None


async def test_tokenless_loopback_server_refuses_foreign_host_headers(served: Served) -> None:
    from .conftest import serve

    invoke()
    assert served.app is not None
    async with serve(served.app, base_url="http://127.0.0.1:8000") as client:
        ours = await client.get("/health")
        rebound = await client.get("/health", headers={"Host": "evil.example:8000"})

    assert ours.status_code == 200
    assert rebound.status_code == 400


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.slow
def test_serves_on_loopback(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "CORRAL_URL": f"sqlite:///{tmp_path}/corral.db", "CORRAL_TOKEN": "t"}
    process = subprocess.Popen(
        [CORRAL, "dashboard", "--port", str(port)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        api = httpx.get(f"http://127.0.0.1:{port}/api/queues", timeout=5)
        authorized = httpx.get(f"http://127.0.0.1:{port}/api/queues", timeout=5,
                               headers={"Authorization": "Bearer t"})
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)

    assert health.json() == {"status": "ok", "backend": "sqlite"}
    assert api.status_code == 401
    assert authorized.status_code == 200
    assert process.returncode == 0
    assert f"http://127.0.0.1:{port}/" in stderr.decode()
