"""Scenario 3: a zombie worker. SIGSTOP a worker while it holds jobs, past its lock; the
others recover and finish those jobs; SIGCONT: none of the zombie's late completions is
accepted (the store fences them by lock token) and each job has one terminal transition."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import orjson
import pytest

import corral

from .conftest import Results, Store
from .harness import Harness, Proc, counts, snapshot, sqlite_writable, wait_for
from .ledger import Report, read_ledger, reconcile

LOCK = 2.0
STALLED = 1.0
QUEUE = "zombie"
HELD = 4
JOBS = 12
JOB_MS = 3000


async def terminal_events(url: str) -> Counter[str]:
    """How many completed/failed events the store recorded per job, from the oldest kept."""
    found: Counter[str] = Counter()
    async with corral.QueueEvents(QUEUE, url=url, last_id="0") as events:
        while batch := await events.read(1000, block_ms=50):
            found.update(e.job_id for e in batch if e.type in ("completed", "failed") and e.job_id)
    return found


def stop_outside_a_transaction(harness: Harness, proc: Proc, store: Store) -> None:
    """SIGSTOP `proc`; on SQLite, at a moment it does not hold the write lock (a stopped
    writer would block every process: SQLite's nature, not what this test is about)."""
    for _ in range(50):
        harness.signal(proc, signal.SIGSTOP)
        if store.db_path is None or sqlite_writable(store.db_path):
            return
        harness.signal(proc, signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("could not stop the worker outside a write transaction")


def ledger_lines(harness: Harness, ev: str, pid: int) -> list[str]:
    return [line.job for line in read_ledger(harness.ledger) if line.ev == ev and line.pid == pid]


@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_a_zombie_workers_late_completions_are_refused(
    store: Store, harness: Harness, results: Results
) -> None:
    producer = harness.producer(
        store.url, QUEUE, count=JOBS, batch=JOBS, data=orjson.dumps({"ms": JOB_MS}).decode()
    )
    assert producer.popen.wait(timeout=60) == 0, harness.log_text("producer")
    zombie = harness.worker(store.url, QUEUE, concurrency=HELD, lock=LOCK, stalled=STALLED)
    wait_for(lambda: len(ledger_lines(harness, "start", zombie.pid)) >= HELD, 60,
             "the zombie holds its jobs", every=0.05)
    stop_outside_a_transaction(harness, zombie, store)
    stopped_at = time.monotonic()
    held = set(ledger_lines(harness, "start", zombie.pid))
    others = [harness.worker(store.url, QUEUE, concurrency=4, lock=LOCK, stalled=STALLED)
              for _ in range(2)]
    wait_for(lambda: counts(store.url, QUEUE).get("completed", 0) >= JOBS, 90,
             "the others finish every job", every=0.25)
    stopped_for = time.monotonic() - stopped_at
    harness.signal(zombie, signal.SIGCONT)
    wait_for(lambda: set(ledger_lines(harness, "refused", zombie.pid)) >= held, 60,
             "the zombie's late results are refused", every=0.25)
    time.sleep(LOCK)  # let it run on a little: nothing more may change
    harness.terminate([zombie, *others])

    final = snapshot(store.url, QUEUE)
    report = Report("3 zombie worker", store.kind,
                    f"{JOBS} jobs × {JOB_MS / 1000:g} s, zombie holds {HELD}, lock {LOCK:g} s")
    reconcile(report, read_ledger(harness.ledger), final)
    zombie_runs = {
        str(line.fields["run"]) for line in read_ledger(harness.ledger)
        if line.ev == "end" and line.pid == zombie.pid
    }
    accepted_from_zombie = sorted(
        job for job, snap in final.items()
        if isinstance(snap.return_value, dict) and snap.return_value.get("run") in zombie_runs
    )
    terminal = asyncio.run(terminal_events(store.url))
    not_once = {job: n for job, n in terminal.items() if n != 1}
    refused = ledger_lines(harness, "refused", zombie.pid)
    report.extra.update({
        "stopped": f"{stopped_for:.1f} s",
        "zombie late results refused": f"{len(refused)}/{len(held)}",
        "accepted from zombie": str(len(accepted_from_zombie)),
        "jobs with ≠1 terminal event": str(len(not_once)),
    })
    report.check(len(held) == HELD, f"the zombie held {len(held)} jobs")
    report.check(stopped_for > LOCK, "the zombie was not stopped past its lock")
    report.check(report.completed == JOBS, f"{report.completed} of {JOBS} completed")
    report.check(not accepted_from_zombie, f"zombie results accepted: {accepted_from_zombie}")
    report.check(not ledger_lines(harness, "done", zombie.pid), "the zombie saw a completion")
    report.check(set(refused) == held, f"refused {sorted(refused)}, held {sorted(held)}")
    report.check(len(terminal) == JOBS and not not_once,
                 f"terminal events per job: {dict(terminal)}")
    report.check(report.stalls == HELD, f"{report.stalls} stalls, expected {HELD}")
    crashed = harness.crashed()
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)
