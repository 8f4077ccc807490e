"""Scenario 5: SQLite. `kill -9` the producer and every worker at random moments, round
after round: `PRAGMA integrity_check` is ok after each round, no acknowledged job is lost,
no job stays stuck active past lock duration + 2 × stalled interval once workers run
again, and no `database is locked` reaches a caller."""

from __future__ import annotations

import asyncio
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

import corral

from .conftest import Results, sqlite_store
from .harness import FULL, Harness, Proc, counts, integrity_check, sized, snapshot, wait_for
from .ledger import Report, read_ledger, reconcile

LOCK = 2.0
STALLED = 1.0
QUEUE = "crashes"
WORKERS = 3
PER_ROUND = 100_000  # id space of one round's producer (it is killed long before the end)


async def active_ids(url: str) -> list[str]:
    async with corral.Queue(QUEUE, url=url) as queue:
        return [job.id for job in await queue.jobs("active", limit=1000)]


@dataclass(frozen=True)
class Window:
    """A stretch of time during which workers ran: from when all were up until the first
    of them was killed (the final phase never ends)."""

    start: float
    end: float


def one_round(harness: Harness, url: str, number: int, rng: random.Random) -> Window:
    """Start a producer and the workers, kill each at a random moment once all are up."""
    procs: list[Proc] = [harness.producer(
        url, QUEUE, start=number * PER_ROUND, count=PER_ROUND, batch=20,
        data=orjson.dumps({"ms": 20}).decode(), max_waiting=300,
    )]
    procs += [harness.worker(url, QUEUE, concurrency=4, lock=LOCK, stalled=STALLED)
              for _ in range(WORKERS)]
    ready = harness.wait_ready(procs)
    first_worker_kill = math.inf
    for delay, n in sorted((rng.uniform(0.1, 2.0), n) for n in range(len(procs))):
        time.sleep(max(0.0, ready + delay - time.time()))
        harness.signal(procs[n], signal.SIGKILL)
        if procs[n].role == "worker":
            first_worker_kill = min(first_worker_kill, time.time())
    return Window(ready, first_worker_kill)


def stuck_for(
    harness: Harness, orphans: list[tuple[str, float]], windows: list[Window], bound: float
) -> list[float]:
    """Per job left active by a round's dead workers (job, when its holder died): seconds
    from when it could be taken again (holder dead and workers up) to its next start. A
    round whose workers all died within `bound` of that moment does not count against it
    (the job is carried to the next round); one that ran longer without starting it
    counts the whole stretch, which exceeds `bound`."""
    starts: dict[str, list[float]] = {}
    for line in read_ledger(harness.ledger):
        if line.ev == "start":
            starts.setdefault(line.job, []).append(line.t)
    out: list[float] = []
    for job, died in orphans:
        restart = min((t for t in starts.get(job, []) if t > died), default=math.inf)
        for window in windows:
            if window.end <= died:
                continue
            begin = max(died, window.start)
            if restart <= window.end:
                out.append(max(0.0, restart - begin))
                break
            if window.end - begin > bound:
                out.append(window.end - begin)
                break
    return out


def holders_death(harness: Harness, jobs: list[str]) -> dict[str, float]:
    """When the worker last seen running each job was killed (for a job claimed but not
    yet started: the last kill so far)."""
    lines = read_ledger(harness.ledger)
    killed = {int(line.fields["target"]): line.t for line in lines if line.ev == "kill"}
    last_kill = max(killed.values(), default=time.time())
    holder: dict[str, int] = {}
    for line in lines:
        if line.ev == "start":
            holder[line.job] = line.pid
    return {job: killed.get(holder.get(job, -1), last_kill) for job in jobs}


@pytest.mark.chaos
@pytest.mark.timeout(900 if FULL else 240)
def test_sqlite_survives_kill_9_of_every_process(
    harness: Harness, tmp_path: Path, results: Results
) -> None:
    store = sqlite_store(tmp_path)
    assert store.db_path is not None
    rounds = int(sized(5, 20))
    rng = random.Random(5)
    integrity: list[str] = []
    orphans: list[tuple[str, float]] = []  # (job left active by dead workers, holder's death)
    windows: list[Window] = []
    for number in range(rounds):
        windows.append(one_round(harness, store.url, number, rng))
        integrity.append(integrity_check(store.db_path))
        orphans += holders_death(harness, asyncio.run(active_ids(store.url))).items()
    finals = [harness.worker(store.url, QUEUE, concurrency=8, lock=LOCK, stalled=STALLED)
              for _ in range(2)]
    windows.append(Window(harness.wait_ready(finals), math.inf))

    def drained() -> bool:
        now = counts(store.url, QUEUE)
        return bool(now) and now["waiting"] == now["active"] == now["delayed"] == 0

    wait_for(drained, sized(120, 600), "every job finished", every=0.5)
    harness.terminate(finals)

    final = snapshot(store.url, QUEUE)
    report = Report("5 SQLite kill -9 everything", "sqlite",
                    f"{rounds} rounds, 1 producer + {WORKERS} workers")
    reconcile(report, read_ledger(harness.ledger), final)
    bound = LOCK + 2 * STALLED
    stuck = stuck_for(harness, orphans, windows, bound)
    worst = max(stuck, default=0.0)
    # Recovery here runs from when an orphaned job could be taken again (its holder dead
    # and workers up again), not from the kill: the next round starts later by design.
    report.recovery = stuck
    ok_rounds = sum(1 for text in integrity if text == "ok")
    logs = harness.log_text()
    locked = logs.count("database is locked")
    unacked = len(set(final) - {line for line in _acked(harness)})
    report.extra.update({
        "integrity_check ok": f"{ok_rounds}/{rounds}",
        "orphaned active jobs": str(len(orphans)),
        "longest stuck": f"{worst:.2f} s (bound {bound:g} s)",
        "'database is locked'": str(locked),
        "stored but not acked": str(unacked),
    })
    report.check(ok_rounds == rounds, f"integrity_check: {integrity}")
    report.check(worst <= bound, f"a job stuck active {worst:.1f} s")
    report.check(locked == 0, "'database is locked' reached a caller")
    report.check("Traceback" not in logs, f"a process failed: {logs[-1500:]}")
    report.check(report.completed == report.acked, f"{report.completed} of {report.acked} done")
    results.finish(report)


def _acked(harness: Harness) -> set[str]:
    return {
        str(job) for line in read_ledger(harness.ledger) if line.ev == "added"
        for job in line.fields["jobs"]
    }
