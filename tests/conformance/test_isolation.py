"""`isolation="process"`: jobs in pooled child processes that can be killed."""

from __future__ import annotations

import os

import pytest

import corral
from corral.clock import SYSTEM

from . import isolated_jobs as jobs
from .support import WorkerFactory, stored


def isolated(make_worker: WorkerFactory, processors: object, **options: object) -> corral.Worker:
    return make_worker(processors, isolation="process", clock=SYSTEM, **options)


async def test_jobs_run_in_a_child_and_can_report_progress(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("double", {"n": 21})
    other = await queue.add("double_async", {"n": 2})
    worker = isolated(make_worker, {"double": jobs.double, "double_async": jobs.double_async})
    assert await worker.run(burst=True) == 2
    done = await stored(queue, job.id)
    assert (done.state, done.return_value, done.progress) == ("completed", 42, 50)
    [line] = await done.logs()
    assert line.startswith("running in ")
    assert line != f"running in {os.getpid()}"
    result = (await stored(queue, other.id)).return_value
    assert result["n"] == 4
    assert result["pid"] != os.getpid()


async def test_a_job_over_its_timeout_has_its_child_killed(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    slow = await queue.add("stuck", {}, timeout=0.5)
    after = await queue.add("pid", {})
    worker = isolated(make_worker, {"stuck": jobs.stuck, "pid": jobs.pid})
    assert await worker.run(burst=True) == 2
    failed = await stored(queue, slow.id)
    assert failed.state == "failed"
    assert "timed out" in (failed.failed_reason or "")
    assert (await stored(queue, after.id)).state == "completed"


@pytest.mark.parametrize("name", ["exits", "segfaults"])
async def test_a_job_that_kills_its_process_fails_that_attempt_and_the_worker_goes_on(
    queue: corral.Queue, make_worker: WorkerFactory, name: str
) -> None:
    crash = await queue.add(name, {}, attempts=2)
    after = await queue.add("pid", {})
    worker = isolated(make_worker, {name: getattr(jobs, name), "pid": jobs.pid})
    assert await worker.run(burst=True) == 3
    failed = await stored(queue, crash.id)
    assert (failed.state, failed.attempts_made) == ("failed", 2)
    assert "exited with code" in (failed.failed_reason or "")
    assert (await stored(queue, after.id)).state == "completed"


async def test_errors_in_the_child_fail_the_attempt_with_their_message(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    bad = await queue.add("raises", {})
    final = await queue.add("gives_up", {}, attempts=5)
    worker = isolated(make_worker, {"raises": jobs.raises, "gives_up": jobs.gives_up})
    await worker.run(burst=True)
    failed = await stored(queue, bad.id)
    assert "ValueError: bad input in the child" in (failed.failed_reason or "")
    assert (await stored(queue, final.id)).attempts_made == 1


async def test_children_are_reused_between_jobs(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    added = [await queue.add("pid", {}) for _ in range(4)]
    await isolated(make_worker, {"pid": jobs.pid}).run(burst=True)
    pids = {(await stored(queue, job.id)).return_value for job in added}
    assert len(pids) == 1


def test_processors_a_child_cannot_import_are_refused(make_worker: WorkerFactory) -> None:
    with pytest.raises(corral.InvalidOptionError, match="top-level"):
        make_worker(lambda job: None, isolation="process")
    with pytest.raises(corral.InvalidOptionError, match="isolation"):
        make_worker(jobs.pid, isolation="fork")
