"""Start and stop a throwaway `redis-server` for tests (plain module, reusable by any suite).

`start_redis(tmp_dir)` runs one on a free loopback port, without persistence, in a
data directory of its own, and returns once it answers PING.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

READY_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str | None:
    """The path of `redis-server`, or None when it is not installed."""
    return shutil.which("redis-server")


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis on this loopback port answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(
    tmp_dir: Path, *extra: str, port: int | None = None
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start `redis-server` on a free loopback port with data in `tmp_dir`; wait for PING.

    Extra arguments are passed on (e.g. `"--maxmemory-policy", "allkeys-lru"`); `port`
    asks for a given port (to restart a server where it was). The caller stops it with
    `stop_redis(process)`.
    """
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # another process may take the port between choosing and binding
        chosen = free_port() if port is None else port
        process = subprocess.Popen(
            [
                binary, "--port", str(chosen), "--bind", "127.0.0.1", "--dir", str(tmp_dir),
                "--save", "", "--appendonly", "no", "--protected-mode", "yes",
                "--maxmemory-policy", "noeviction", *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if ping(chosen):
                return chosen, process
            time.sleep(0.01)
        stop_redis(process)
    raise RuntimeError(f"redis-server did not start in {tmp_dir}")


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by `start_redis` and wait for it to exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_cluster(
    tmp_dir: Path, masters: int = 3
) -> tuple[list[int], list[subprocess.Popen[bytes]]]:
    """Start a Redis Cluster of `masters` loopback nodes (no replicas); wait until it is ok.

    Stop it with `stop_redis` on each process.
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not installed")
    ports: list[int] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for node in range(masters):
            port, process = start_redis(
                tmp_dir / f"node{node}", "--cluster-enabled", "yes",
                "--cluster-config-file", str(tmp_dir / f"node{node}" / "nodes.conf"),
            )
            ports.append(port)
            processes.append(process)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(_cluster_ok(cli, port) for port in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ok")
            time.sleep(0.05)
    except BaseException:
        for process in processes:
            stop_redis(process)
        raise
    return ports, processes


def _cluster_ok(cli: str, port: int) -> bool:
    info = subprocess.run(
        [cli, "-p", str(port), "cluster", "info"], capture_output=True, timeout=5, check=False
    )
    return b"cluster_state:ok" in info.stdout
