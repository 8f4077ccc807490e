"""Flows, the same on every store: a parent waits in `waiting-children` for its children,
in any queues, and each child's end moves it (see `corral.backends.base`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral import clock
from corral.backends.base import (
    AddResult,
    Backend,
    ChildRecord,
    Complete,
    Fail,
    FlowJob,
    Limits,
    ParentRef,
    Retention,
)
from corral.errors import InvalidOptionError
from corral.job_state import JobState
from tests.backends.protocol.support import (
    EMPTY,
    LOCK_MS,
    T0,
    add,
    claim,
    ids,
    new_job,
    state_of,
)

P = "parents"
"""The queue of the parents; their children go into "q"."""


def parent(job_id: str, children: int, **changes: Any) -> FlowJob:
    """A parent in queue `P` waiting for `children` children."""
    return FlowJob(P, new_job(job_id, children=children, **changes))


def child(job_id: str, of: str = "p", queue: str = "q", ignore: bool = False,
          parent_queue: str = P, **changes: Any) -> FlowJob:
    """A child in `queue` of the job `of` in `parent_queue`."""
    return FlowJob(queue, new_job(job_id, parent=ParentRef(parent_queue, of, ignore), **changes))


async def add_flow(backend: Backend, *jobs: FlowJob, now: int = T0) -> AddResult:
    """Add a flow at its queues' current config versions, failing the test when the store
    reports a stale config."""
    versions = {job.queue: (await backend.get_config(job.queue)).version for job in jobs}
    result = await backend.add_flow(list(jobs), versions, now)
    assert not result.stale_config
    return result


async def settle(backend: Backend, *outcomes: Complete | Fail, now: int = T0 + 10,
                 queue: str = "q") -> None:
    """Apply outcomes, failing the test when the store refuses one."""
    result = await backend.settle(queue, list(outcomes), 0, LOCK_MS, "w1", now)
    assert result.refused == []


async def held(backend: Backend, queue: str = "q", now: int = T0) -> dict[str, str]:
    """Claim every waiting job of `queue`: id -> token."""
    return {c.record.id: c.token for c in await claim(backend, 100, now, queue)}


async def pending(backend: Backend, job_id: str = "p", queue: str = P) -> tuple[str, int]:
    """A parent's state and the children it still waits for."""
    job = await backend.get_job(queue, job_id)
    assert job is not None
    return str(job.state), job.pending_children


async def states(backend: Backend, job_id: str = "p", queue: str = P) -> list[tuple[str, str]]:
    """A parent's child records: (child id, state), in the order they were added."""
    records = await backend.dependencies(queue, job_id)
    assert records is not None
    return [(record.id, record.state) for record in records]


async def test_a_flow_across_queues_waits_for_its_children(backend: Backend) -> None:
    result = await add_flow(
        backend, parent("p", 2, delay_ms=5000), child("c1"), child("c2", delay_ms=1000)
    )
    created = [(record.id, record.state, new) for record, new in result.records]
    assert created == [
        ("p", JobState.WAITING_CHILDREN, True),
        ("c1", JobState.WAITING, True),
        ("c2", JobState.DELAYED, True),
    ]
    root = await backend.get_job(P, "p")
    assert root is not None
    assert (root.parent, root.pending_children, root.run_at) == (None, 2, T0 + 5000)
    c1 = await backend.get_job("q", "c1")
    assert c1 is not None
    assert (c1.parent, c1.pending_children) == (ParentRef(P, "p", False), 0)
    assert await backend.counts(P) == {**EMPTY, "waiting-children": 1}
    assert await backend.counts("q") == {**EMPTY, "waiting": 1, "delayed": 1}
    assert [job.id for job in await backend.list_jobs(P, "waiting-children", 0, 10)] == ["p"]
    assert await backend.dependencies(P, "p") == [
        ChildRecord("q", "c1", "pending"), ChildRecord("q", "c2", "pending"),
    ]
    assert await backend.queue_names() == [P, "q"]
    assert not await backend.promote(P, "p", T0)
    assert await claim(backend, 5, T0 + 60_000, P) == []
    (claimed,) = await claim(backend, 5)
    assert claimed.record.parent == ParentRef(P, "p", False)


async def test_the_last_child_done_sets_the_parent_going(backend: Backend) -> None:
    await add_flow(backend, parent("p", 2), child("c1"), child("c2"))
    tokens = await held(backend)
    await settle(backend, Complete("c1", tokens["c1"], '{"n": 1}'))
    assert await pending(backend) == ("waiting-children", 1)
    assert await backend.dependencies(P, "p") == [
        ChildRecord("q", "c1", "completed", return_value='{"n": 1}'),
        ChildRecord("q", "c2", "pending"),
    ]
    await settle(backend, Complete("c2", tokens["c2"], "2"))
    assert await pending(backend) == ("waiting", 0)
    assert await states(backend) == [("c1", "completed"), ("c2", "completed")]
    assert ids(await claim(backend, 5, T0 + 20, P)) == ["p"]


async def test_a_parent_whose_run_at_is_ahead_is_delayed_until_then(backend: Backend) -> None:
    await add_flow(backend, parent("p", 1, delay_ms=60_000), child("c1"))
    tokens = await held(backend)
    await settle(backend, Complete("c1", tokens["c1"], "null"))
    job = await backend.get_job(P, "p")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.DELAYED, T0 + 60_000)
    assert await claim(backend, 5, T0 + 59_999, P) == []
    assert ids(await claim(backend, 5, T0 + 60_000, P)) == ["p"]


async def test_children_in_the_parents_queue(backend: Backend) -> None:
    flow = [FlowJob("q", new_job("p", children=2)), child("c1", parent_queue="q"),
            child("c2", parent_queue="q")]
    await add_flow(backend, *flow)
    tokens = await held(backend)
    assert sorted(tokens) == ["c1", "c2"]
    await settle(backend, Complete("c1", tokens["c1"], "1"), Complete("c2", tokens["c2"], "2"))
    assert await pending(backend, queue="q") == ("waiting", 0)
    assert ids(await claim(backend, 5, T0 + 20)) == ["p"]


async def test_a_child_failing_fails_its_parent_and_on_up_the_flow(backend: Backend) -> None:
    await add_flow(
        backend,
        FlowJob("top", new_job("g", children=1, keep_failed=Retention(0, None))),
        parent("p", 2, parent=ParentRef("top", "g")),
        child("c1"),
        child("c2"),
    )
    tokens = await held(backend)
    await settle(backend, Fail("c1", tokens["c1"], "boom", "trace"))
    p = await backend.get_job(P, "p")
    assert p is not None
    assert (p.state, p.failed_reason, p.finished_at) == (
        JobState.FAILED, "child q:c1 failed: boom", T0 + 10,
    )
    assert await backend.dependencies(P, "p") == [
        ChildRecord("q", "c1", "failed", failed_reason="boom"),
        ChildRecord("q", "c2", "pending"),
    ]
    assert await backend.get_job("top", "g") is None  # failed, and removed by its retention
    for queue in (P, "top"):
        (minute,) = await backend.metrics(queue, T0 - 60_000, T0 + 60_000)
        assert (minute.completed, minute.failed) == (0, 1)
    events = await backend.read_events(P, "0", 100, 0)
    assert [(e.type, e.job_id) for e in events if e.job_id == "p"] == [
        ("added", "p"), ("failed", "p"),
    ]
    # A failed parent is left alone by its other children, and retried like any job.
    await settle(backend, Complete("c2", tokens["c2"], "null"))
    assert await state_of(backend, "p", P) == "failed"
    assert await backend.retry_job(P, "p", T0 + 20)
    assert await state_of(backend, "p", P) == "waiting"


async def test_an_ignored_failure_lets_the_parent_go_on(backend: Backend) -> None:
    await add_flow(backend, parent("p", 2), child("c1", ignore=True), child("c2"))
    tokens = await held(backend)
    await settle(backend, Fail("c1", tokens["c1"], "boom", None))
    assert await pending(backend) == ("waiting-children", 1)
    assert await backend.dependencies(P, "p") == [
        ChildRecord("q", "c1", "failed", failed_reason="boom"),
        ChildRecord("q", "c2", "pending"),
    ]
    await settle(backend, Complete("c2", tokens["c2"], "null"))
    assert await pending(backend) == ("waiting", 0)


async def test_a_child_stalled_too_often_fails_its_parent(backend: Backend) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    await claim(backend, 1)
    result = await backend.recover_stalled("q", 0, T0 + LOCK_MS + 1)
    assert result.failed == ["c1"]
    c1 = await backend.get_job("q", "c1")
    p = await backend.get_job(P, "p")
    assert c1 is not None
    assert p is not None
    assert (p.state, p.failed_reason) == (
        JobState.FAILED, f"child q:c1 failed: {c1.failed_reason}",
    )
    assert await states(backend) == [("c1", "failed")]


async def test_a_retry_of_a_child_changes_nothing_for_its_parent(backend: Backend) -> None:
    await add_flow(backend, parent("p", 2), child("c1"), child("c2"))
    tokens = await held(backend)
    await settle(backend, Complete("c1", tokens["c1"], "1"))
    assert await backend.retry_job("q", "c1", T0 + 20)
    tokens = await held(backend, now=T0 + 30)
    await settle(backend, Complete("c1", tokens["c1"], "2"), now=T0 + 40)
    assert await pending(backend) == ("waiting-children", 1)
    records = await backend.dependencies(P, "p")
    assert records is not None
    assert records[0].return_value == "1"


async def test_removing_pending_children_releases_their_parent(backend: Backend) -> None:
    await add_flow(
        backend,
        parent("p", 4),
        child("c1"),
        child("c2", tags=("t",)),
        child("c3", delay_ms=1000),
        child("c4"),
    )
    assert await backend.remove("q", "c1")
    assert await pending(backend) == ("waiting-children", 3)
    assert await backend.remove_tagged("q", "t") == 1
    assert await backend.drain("q", delayed=True) == 2
    assert await pending(backend) == ("waiting", 0)
    assert await states(backend) == [
        ("c1", "removed"), ("c2", "removed"), ("c3", "removed"), ("c4", "removed"),
    ]


async def test_cleaning_pending_children_releases_their_parent(backend: Backend) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    assert await backend.clean("q", "waiting", 0, 0, T0 + 10) == ["c1"]
    assert await pending(backend) == ("waiting", 0)
    assert await states(backend) == [("c1", "removed")]


async def test_a_finished_child_removed_stays_recorded(backend: Backend) -> None:
    await add_flow(
        backend, parent("p", 2), child("c1", keep_completed=Retention(0, None)), child("c2")
    )
    tokens = await held(backend)
    await settle(backend, Complete("c1", tokens["c1"], '"kept"'))
    assert await backend.get_job("q", "c1") is None
    assert await backend.dependencies(P, "p") == [
        ChildRecord("q", "c1", "completed", return_value='"kept"'),
        ChildRecord("q", "c2", "pending"),
    ]
    assert await pending(backend) == ("waiting-children", 1)


async def test_removing_a_parent_removes_its_records_not_its_children(backend: Backend) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    assert await backend.remove(P, "p")
    assert await backend.dependencies(P, "p") is None
    tokens = await held(backend)
    await settle(backend, Complete("c1", tokens["c1"], "null"))
    assert await state_of(backend, "c1") == "completed"
    assert await backend.get_job(P, "p") is None
    await add_flow(backend, parent("p", 1), child("c9"))
    assert await states(backend) == [("c9", "pending")]


async def test_a_root_id_still_stored_returns_it_and_writes_nothing(backend: Backend) -> None:
    await add(backend, new_job("p"), queue=P)
    before = await backend.get_job(P, "p")
    result = await add_flow(backend, parent("p", 1), child("c1"))
    assert result.records == [(before, False)]
    assert await backend.get_job("q", "c1") is None
    assert await backend.counts("q") == EMPTY
    assert await backend.dependencies(P, "p") == []


async def test_a_child_id_still_stored_refuses_the_flow(backend: Backend) -> None:
    await add(backend, new_job("c2"))
    with pytest.raises(InvalidOptionError, match=r"c2.*\bq\b"):
        await add_flow(backend, parent("p", 2), child("c1"), child("c2"))
    assert await backend.get_job(P, "p") is None
    assert await backend.get_job("q", "c1") is None
    assert await backend.counts("q") == {**EMPTY, "waiting": 1}
    assert await backend.counts(P) == EMPTY


async def test_a_stale_config_version_writes_nothing(backend: Backend) -> None:
    await backend.set_config("q", "{}", Limits())
    flow: list[FlowJob] = [parent("p", 1), child("c1")]
    result = await backend.add_flow(flow, {P: 0, "q": 0}, T0)
    assert (result.stale_config, result.records) == (True, [])
    assert await backend.get_job(P, "p") is None
    assert await backend.get_job("q", "c1") is None
    assert (await add_flow(backend, *flow)).records[0][1]


async def test_dependencies_of_unknown_and_childless_jobs(backend: Backend) -> None:
    assert await backend.dependencies("q", "nobody") is None
    await add(backend, new_job("plain"))
    assert await backend.dependencies("q", "plain") == []


async def timed_wait(backend: Backend, queue: str) -> float:
    """Seconds `wait_for_change` took, with a timeout no passing test waits for."""
    started = clock.monotonic()
    await asyncio.wait_for(backend.wait_for_change(queue, 30), 60)
    return clock.monotonic() - started


async def test_a_parent_set_going_by_another_worker_wakes_its_queue(
    backend: Backend, second: Backend
) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    tokens = await held(second)
    assert await claim(backend, 5, T0, P) == []  # a worker of P looks, finds nothing, waits
    waiting = asyncio.ensure_future(timed_wait(backend, P))
    await asyncio.sleep(0.05)
    await settle(second, Complete("c1", tokens["c1"], "null"))
    assert await waiting < 5


async def test_a_parent_set_going_after_a_look_is_not_missed(backend: Backend) -> None:
    await add_flow(backend, parent("p", 1), child("c1"))
    tokens = await held(backend)
    assert await claim(backend, 5, T0, P) == []
    await settle(backend, Complete("c1", tokens["c1"], "null"))
    assert await timed_wait(backend, P) < 5  # the work came after the look: no wait
