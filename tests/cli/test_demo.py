"""`corral demo`: the five reference applications, their workers and the dashboard, live."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import corral
from corral.cli import cli
from corral.cli.demo import demo_start

CORRAL = str(Path(sys.executable).with_name("corral"))
QUEUES = {
    "leadFunnel", "tickets", "scheduled-messages", "broadcast-contracts", "broadcast-messages",
    "ingest", "webhooks", "rollup", "credits", "email",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return json.loads(response.read())


def completed(url: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        result = {}
        for name in QUEUES:
            async with corral.Queue(name, url=url) as queue:
                result[name] = (await queue.counts())["completed"]
        return result

    return asyncio.run(read())


def test_the_demo_starts_before_a_month_ends() -> None:
    assert demo_start(datetime(2026, 11, 25, 13, tzinfo=UTC)) == datetime(
        2026, 11, 30, 23, tzinfo=UTC
    )
    assert demo_start(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == datetime(
        2026, 12, 31, 23, tzinfo=UTC
    )


@pytest.mark.slow
def test_the_demo_serves_the_dashboard_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, directory = free_port(), tmp_path / "demo"
    # Run from elsewhere: the demo finds the examples of the checkout corral comes from.
    child = subprocess.Popen(
        [CORRAL, "demo", "--duration", "120", "--port", str(port), "--dir", str(directory)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while names != QUEUES and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                listed = get_json(f"http://127.0.0.1:{port}/api/queues")
            except OSError:
                continue
            names = {queue["name"] for queue in listed["queues"]}
        assert names == QUEUES
        assert get_json(f"http://127.0.0.1:{port}/health")["status"] == "ok"
        time.sleep(5)  # five hours of the applications' time
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)

    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert "interrupted after" in out
    assert f"dashboard: http://127.0.0.1:{port}/" in out
    done = completed(f"sqlite:///{directory}/corral.db")
    for queue in ("broadcast-messages", "scheduled-messages", "ingest", "credits", "rollup"):
        assert done[queue] > 0, (queue, done)


def test_the_demo_refuses_to_empty_a_directory_of_yours(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path)])

    assert result.exit_code == 2
    assert "not a corral demo directory" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
