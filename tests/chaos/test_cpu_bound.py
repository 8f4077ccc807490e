"""Scenario 6: CPU-bound jobs are not taken for stalled. An `async def` job that blocks its
event loop and a plain function that spins in a thread, each for more than twice the lock
duration, and with `isolation="process"` a C call that holds the GIL as long: no false
stall, each job runs once. The process-isolated worker, whose event loop stays free, looks
for lapsed locks every stalled interval meanwhile."""

from __future__ import annotations

import asyncio
import time

import pytest

import corral

from .conftest import Results, Store
from .harness import FULL, Harness, counts, sized, snapshot, wait_for
from .ledger import Line, Report, read_ledger, reconcile

QUEUE = "cpu"
STALLED = 1.0


async def add(url: str, harness: Harness, *specs: corral.JobSpec) -> None:
    async with corral.Queue(QUEUE, url=url) as queue:
        jobs = await queue.add_bulk(list(specs))
    harness.own.record("added", jobs=[job.id for job in jobs])


def spec(name: str, job_id: str, data: dict[str, float]) -> corral.JobSpec:
    return corral.JobSpec(name, data, job_id=job_id, remove_on_complete=False)


def starts(harness: Harness) -> dict[str, Line]:
    return {line.job: line for line in read_ledger(harness.ledger) if line.ev == "start"}


@pytest.mark.chaos
@pytest.mark.timeout(300 if FULL else 150)
def test_cpu_bound_jobs_are_not_taken_for_stalled(
    store: Store, harness: Harness, results: Results
) -> None:
    block = sized(6, 10)
    lock = sized(2, 5)
    assert block >= 2 * lock
    options = {"lock": lock, "stalled": STALLED}

    # The isolated worker takes the GIL-holding job first; its event loop stays free, so it
    # also looks for lapsed locks (its own included) every stalled interval throughout.
    isolated = harness.worker(store.url, QUEUE, concurrency=1, isolation="process", **options)
    harness.wait_ready([isolated])
    asyncio.run(add(store.url, harness, spec("gil_hold", "c-holds-gil", {"s": block})))
    wait_for(lambda: "c-holds-gil" in starts(harness), 60, "the GIL job runs", every=0.1)
    # Then one thread-isolated worker takes both others: the spinning thread starts first,
    # then the async job blocks the loop while the thread spins.
    threaded = harness.worker(store.url, QUEUE, concurrency=2, **options)
    harness.wait_ready([threaded])
    asyncio.run(add(store.url, harness, spec("spin", "sync-spins", {"s": block}),
                    spec("block_loop", "async-blocks-loop", {"s": block})))
    wait_for(lambda: counts(store.url, QUEUE).get("completed", 0) >= 3, 4 * block + 60,
             "every job completed", every=0.5)
    time.sleep(2 * STALLED)  # a late false stall would show in the next checks
    harness.terminate([isolated, threaded])

    lines = read_ledger(harness.ledger)
    report = Report("6 CPU-bound jobs", store.kind,
                    f"block {block:g} s, lock {lock:g} s, stalled {STALLED:g} s")
    reconcile(report, lines, snapshot(store.url, QUEUE))
    began = {line.fields["run"]: line.t for line in lines if line.ev == "start"}
    ran = {line.job: line.t - began[line.fields["run"]] for line in lines if line.ev == "end"}
    for job in ("async-blocks-loop", "sync-spins", "c-holds-gil"):
        report.extra[job] = f"{ran.get(job, 0):.1f} s"
        report.check(ran.get(job, 0) >= block - 0.5, f"{job} did not block for {block:g} s")
    report.check(report.completed == 3, f"{report.completed} of 3 completed")
    report.check(report.stalls == 0, f"{report.stalls} false stalls")
    report.check(report.duplicates == 0, f"{report.duplicates} duplicate runs")
    crashed = harness.crashed()
    report.check(not crashed, f"crashed: {[(p.role, p.popen.returncode) for p in crashed]}")
    results.finish(report)
