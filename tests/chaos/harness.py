"""Processes, servers and store probes for the chaos tests.

`Harness` starts every process of a test (workers, producers, redis-servers) with
`subprocess`, keeps their pids, and signals only those, by pid; `close()` kills whatever
is still running. Each process writes its stderr to `logs/<role>-<n>.log` and its ledger
lines to `ledger/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import corral
from tests.redis_server import ping, redis_server_binary

from .ledger import LEDGER_ENV, LedgerWriter, Snap, read_ledger

REPO = Path(__file__).resolve().parents[2]
MODE = "full" if os.environ.get("CORRAL_CHAOS", "").lower() == "full" else "fast"
FULL = MODE == "full"

full_only = pytest.mark.skipif(
    not FULL, reason="full chaos run only: ./scripts/chaos (CORRAL_CHAOS=full)"
)
needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")

STATES = ("waiting", "active", "delayed", "completed", "failed", "waiting-children")


def sized(fast: float, full: float) -> float:
    """The fast or the full figure, by mode."""
    return full if FULL else fast


@dataclass
class Proc:
    """One process a test started."""

    role: str
    popen: subprocess.Popen[bytes]
    log: Path
    signalled: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class Harness:
    """Starts, signals and finally reaps the processes of one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = root / "ledger"
        self.logs = root / "logs"
        self.ledger.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.own = LedgerWriter(self.ledger, "harness")
        self._lock = threading.Lock()

    # -- starting --------------------------------------------------------------------------

    def spawn(self, role: str, argv: Sequence[str]) -> Proc:
        """Start `argv` with the ledger directory in its environment."""
        with self._lock:
            log = self.logs / f"{role}-{len(self.procs)}.log"
        env = {**os.environ, LEDGER_ENV: str(self.ledger), "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as stderr:
            popen = subprocess.Popen(
                list(argv), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        proc = Proc(role, popen, log)
        with self._lock:
            self.procs.append(proc)
        return proc

    def worker(self, url: str, queue: str, **options: object) -> Proc:
        """A `chaos_worker` process; options become `--name value` flags."""
        argv = [sys.executable, "-m", "tests.chaos.chaos_worker", url, queue]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        return self.spawn("worker", argv)

    def producer(self, url: str, queue: str, **options: object) -> Proc:
        """A `chaos_producer` process; options become `--name value` flags."""
        argv = [sys.executable, "-m", "tests.chaos.chaos_producer", url, queue]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        return self.spawn("producer", argv)

    # -- signalling (only our own processes, by pid) ---------------------------------------

    def signal(self, proc: Proc, signum: signal.Signals) -> None:
        """Send `signum` to `proc` (one of ours) and note it in the harness ledger."""
        assert proc in self.procs, "only processes this test started are signalled"
        if not proc.alive():
            return
        os.kill(proc.pid, signum)
        proc.signalled.append(signum.name)
        self.own.record("kill", target=proc.pid, role=proc.role, signal=signum.name)
        if signum == signal.SIGKILL:
            proc.popen.wait(timeout=30)

    def terminate(self, procs: Sequence[Proc], timeout: float = 30) -> None:
        """SIGTERM (a graceful close), then wait; SIGKILL what is left after `timeout`."""
        for proc in procs:
            if proc.alive():
                os.kill(proc.pid, signal.SIGTERM)
                proc.signalled.append("SIGTERM")
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.signal(proc, signal.SIGKILL)

    def close(self) -> None:
        """Kill (by pid) every process of this test that still runs; continue stopped ones."""
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                    os.kill(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=30)

    # -- looking -----------------------------------------------------------------------------

    def crashed(self) -> list[Proc]:
        """Processes that exited although nobody killed them (graceful stops excepted)."""
        out = []
        for proc in self.procs:
            code = proc.popen.poll()
            if code is None or "SIGKILL" in proc.signalled:
                continue
            # SIGTERM before a freshly started worker installed its handlers ends it at once.
            if code != 0 and not (code == -signal.SIGTERM and "SIGTERM" in proc.signalled):
                out.append(proc)
        return out

    def log_text(self, role: str | None = None) -> str:
        return "\n".join(
            proc.log.read_text(errors="replace") for proc in self.procs
            if (role is None or proc.role == role) and proc.log.exists()
        )

    def ready(self, proc: Proc) -> bool:
        """Whether `proc` wrote its first ledger line (workers and producers: `ready`)."""
        return any(self.ledger.glob(f"*-{proc.pid}.jsonl"))

    def wait_ready(self, procs: Sequence[Proc], timeout: float = 60) -> float:
        """Wait until each process wrote `ready` in the ledger; the time of the last one."""
        pids = {proc.pid for proc in procs}
        deadline = time.monotonic() + timeout
        while True:
            ready = {
                line.pid: line.t for line in read_ledger(self.ledger) if line.ev == "ready"
            }
            if pids <= ready.keys():
                return max(ready[pid] for pid in pids)
            dead = [proc for proc in procs if not proc.alive()]
            assert not dead, f"died before ready: {self.log_text()[-2000:]}"
            assert time.monotonic() < deadline, "processes did not get ready"
            time.sleep(0.1)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.25
) -> float:
    """Poll until `predicate()`; the seconds it took. Fails the test after `timeout`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out after {timeout:.0f} s: {what}"
        time.sleep(every)
    return time.monotonic() - started


class Supervisor:
    """Kills a random running worker with SIGKILL every `every` seconds and starts another
    in its place, from a thread, until stopped."""

    def __init__(self, harness: Harness, workers: list[Proc], every: float,
                 start: Callable[[], Proc], seed: int = 7) -> None:
        self.harness = harness
        self.workers = workers
        self.every = every
        self.start_worker = start
        self.random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-supervisor", daemon=True)
        self.kills = 0

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            # Like a real supervisor's victims, only workers that are up (wrote `ready`):
            # killing processes that are still importing would only stall the test.
            live = [proc for proc in self.workers if proc.alive() and self.harness.ready(proc)]
            if not live:
                continue
            victim = self.random.choice(live)
            self.harness.signal(victim, signal.SIGKILL)
            self.kills += 1
            self.workers.remove(victim)
            self.workers.append(self.start_worker())


# -- stores ----------------------------------------------------------------------------------


async def _snapshot(url: str, queue_name: str) -> dict[str, Snap]:
    found: dict[str, Snap] = {}
    async with corral.Queue(queue_name, url=url) as queue:
        for state in STATES:
            offset = 0
            while True:
                page = await queue.jobs(state, offset=offset, limit=1000)
                for job in page:
                    found[job.id] = Snap(
                        str(job.state), job.stalled_count, job.attempts_made, job.return_value
                    )
                if len(page) < 1000:
                    break
                offset += len(page)
    return found


def snapshot(url: str, queue_name: str) -> dict[str, Snap]:
    """Every job of the queue as stored now (call it once nothing runs)."""
    return asyncio.run(_snapshot(url, queue_name))


async def _counts(url: str, queue_name: str) -> dict[str, int]:
    async with corral.Queue(queue_name, url=url) as queue:
        return await queue.counts()


def counts(url: str, queue_name: str) -> dict[str, int]:
    """The queue's counts by state; {} while the store does not answer."""
    try:
        return asyncio.run(_counts(url, queue_name))
    except corral.BackendUnavailableError:
        return {}


def integrity_check(path: Path) -> str:
    """`PRAGMA integrity_check` of a SQLite file ("ok" when it is sound)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)


def sqlite_writable(path: Path, timeout: float = 0.5) -> bool:
    """True when a write transaction on the file can begin within `timeout` (no process
    holds the write lock)."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


# -- redis-server with a data directory --------------------------------------------------------


@dataclass
class RedisOptions:
    """How a chaos redis-server persists: AOF on or off, its fsync policy."""

    appendonly: bool = False
    appendfsync: str = "everysec"
    save: str = ""
    """RDB snapshot rules ("" for none; "3600 1 300 100 60 10000" is redis' default)."""

    def argv(self) -> list[str]:
        return [
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync, "--save", self.save,
        ]


def start_redis_server(
    harness: Harness, data_dir: Path, port: int, options: RedisOptions
) -> Proc:
    """Start redis-server on `port` with its data in `data_dir`; wait until it answers PING
    (after loading its AOF or RDB)."""
    binary = redis_server_binary()
    assert binary is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = harness.spawn("redis", [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--protected-mode", "yes", "--maxmemory-policy", "noeviction", *options.argv(),
    ])
    wait_for(lambda: ping(port), 60, "redis-server answers PING", every=0.02)
    return proc
