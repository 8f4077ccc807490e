"""Flows: a parent waits in `waiting-children` for its children, possibly in other queues."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import corral
from corral.testing import VirtualClock

from .support import WorkerFactory, WorkerStarter, wait_for

Spec = corral.JobSpec


async def echo(job: corral.Job) -> Any:
    if job.data.get("fail"):
        raise ValueError(f"cannot send {job.data['i']}")
    return job.data["i"] * 10


async def collect(job: corral.Job) -> dict[str, Any]:
    return {"values": await job.children_values(), "pending": job.pending_children}


async def run_burst(make_worker: WorkerFactory, queue_name: str, processor: Any) -> int:
    return await make_worker(processor, queue_name=queue_name, concurrency=5).run(burst=True)


async def test_parent_waits_for_children_in_its_own_and_other_queues(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    parent = await queue.add("sum", {"n": 3}, job_id="p", children=[
        Spec("send", {"i": 1}, job_id="c1"),
        Spec("send", {"i": 2}, job_id="c2", queue="messages"),
        Spec("send", {"i": 3}, job_id="c3", queue="messages"),
    ])

    assert parent.id == "p"
    assert not parent.duplicate
    assert parent.state == corral.JobState.WAITING_CHILDREN
    assert parent.pending_children == 3
    assert (await queue.counts())["waiting-children"] == 1
    assert [j.id for j in await queue.jobs("waiting-children")] == ["p"]
    children = await parent.children()
    assert [(c.queue, c.id, c.state) for c in children] == [
        ("q", "c1", "pending"), ("messages", "c2", "pending"), ("messages", "c3", "pending"),
    ]
    messages = corral.Queue("messages", url=queue.url, clock=queue.clock)
    child = await messages.get_job("c2")
    assert child is not None
    assert child.parent == corral.JobRef("q", "p")
    assert child.to_json()["parent"] == {"queue": "q", "id": "p"}
    assert (await child.get_parent()) is not None

    assert await run_burst(make_worker, "messages", echo) == 2
    assert (await parent.refresh()).pending_children == 1
    assert await parent.get_state() == corral.JobState.WAITING_CHILDREN

    # The q worker runs c1, after which p is due, and runs p in the same burst.
    assert await run_burst(make_worker, "q", {"send": echo, "sum": collect}) == 2
    assert await parent.get_state() == corral.JobState.COMPLETED
    assert parent.return_value == {
        "values": {"q:c1": 10, "messages:c2": 20, "messages:c3": 30}, "pending": 0,
    }
    await messages.close()


async def test_a_failed_child_fails_its_parent_and_the_failure_goes_up(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    root = await queue.add("root", job_id="root", children=[
        Spec("mid", job_id="mid", children=[Spec("send", {"i": 7, "fail": True}, job_id="leaf")]),
        Spec("send", {"i": 1}, job_id="sibling"),
    ])

    await run_burst(make_worker, "q", {"send": echo, "mid": collect, "root": collect})

    leaf, mid = await queue.get_job("leaf"), await queue.get_job("mid")
    assert leaf is not None
    assert leaf.state == corral.JobState.FAILED
    assert mid is not None
    assert mid.state == corral.JobState.FAILED
    assert mid.failed_reason == "child q:leaf failed: cannot send 7"
    await root.refresh()
    assert root.state == corral.JobState.FAILED
    assert root.failed_reason == f"child q:mid failed: {mid.failed_reason}"
    assert root.attempts_made == 0  # it never ran
    by_id = {child.id: child for child in await root.children()}
    assert by_id["mid"].state == "failed"
    assert by_id["sibling"].state == "completed"


async def test_an_ignored_failure_lets_the_parent_run_without_that_value(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    parent = await queue.add("sum", job_id="p", children=[
        Spec("send", {"i": 1, "fail": True}, job_id="bad", on_failure="ignore", attempts=2),
        Spec("send", {"i": 2}, job_id="good"),
    ])

    await run_burst(make_worker, "q", {"send": echo, "sum": collect})

    await parent.refresh()
    assert parent.state == corral.JobState.COMPLETED
    assert parent.return_value == {"values": {"q:good": 20}, "pending": 0}
    bad = next(child for child in await parent.children() if child.id == "bad")
    assert bad.state == "failed"
    assert bad.failed_reason == "cannot send 1"
    assert (await queue.get_job("bad")).attempts_made == 2  # type: ignore[union-attr]


async def test_a_nested_flow_runs_from_the_leaves_up(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    order: list[str] = []

    async def record(job: corral.Job) -> str:
        order.append(job.id)
        values = await job.children_values()
        return job.id + "(" + ",".join(sorted(str(v) for v in values.values())) + ")"

    root = await queue.add("n", job_id="a", children=[
        Spec("n", job_id="b", children=[Spec("n", job_id="d"), Spec("n", job_id="e")]),
        Spec("n", job_id="c"),
    ])
    await run_burst(make_worker, "q", record)

    assert order.index("b") > max(order.index("d"), order.index("e"))
    assert order[-1] == "a"
    assert (await root.refresh()).return_value == "a(b(d(),e()),c())"


async def test_a_parent_with_a_delay_waits_for_it_after_its_children(
    queue: corral.Queue, make_worker: WorkerFactory, clock: VirtualClock
) -> None:
    parent = await queue.add(
        "sum", job_id="p", delay=timedelta(hours=1), children=[Spec("send", {"i": 1})]
    )
    await run_burst(make_worker, "q", {"send": echo, "sum": collect})
    assert (await parent.refresh()).state == corral.JobState.DELAYED

    await clock.advance(timedelta(hours=1))
    await run_burst(make_worker, "q", {"send": echo, "sum": collect})
    assert (await parent.refresh()).state == corral.JobState.COMPLETED


async def test_removing_a_pending_child_releases_its_parent(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    parent = await queue.add("sum", job_id="p", children=[
        Spec("send", {"i": 1}, job_id="c1", delay=3600), Spec("send", {"i": 2}, job_id="c2"),
    ])
    assert await queue.remove("c1")
    await run_burst(make_worker, "q", {"send": echo, "sum": collect})

    await parent.refresh()
    assert parent.state == corral.JobState.COMPLETED
    assert parent.return_value == {"values": {"q:c2": 20}, "pending": 0}
    assert [c.state for c in await parent.children()] == ["removed", "completed"]


async def test_an_idle_worker_of_the_parent_queue_wakes_when_children_finish(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    start_worker(make_worker(collect, queue_name="q"))
    parent = await queue.add("sum", job_id="p", children=[
        Spec("send", {"i": i}, queue="messages") for i in range(5)
    ])
    start_worker(make_worker(echo, queue_name="messages", concurrency=5))

    async def parent_completed() -> bool:
        return await parent.get_state() == corral.JobState.COMPLETED

    await wait_for(parent_completed, timeout=10)
    assert sorted(parent.return_value["values"].values()) == [0, 10, 20, 30, 40]


async def test_a_stored_root_id_returns_that_job_and_adds_no_children(
    queue: corral.Queue,
) -> None:
    first = await queue.add("sum", job_id="p", children=[Spec("send", {"i": 1}, job_id="c1")])
    again = await queue.add("sum", job_id="p", children=[Spec("send", {"i": 2}, job_id="c2")])

    assert again.duplicate
    assert again.id == first.id
    assert await queue.get_job("c2") is None
    assert [c.id for c in await again.children()] == ["c1"]


async def test_a_stored_child_id_refuses_the_whole_flow(queue: corral.Queue) -> None:
    await queue.add("send", {"i": 0}, job_id="taken")
    before = await queue.counts()

    with pytest.raises(corral.InvalidOptionError, match="taken"):
        await queue.add("sum", job_id="p", children=[
            Spec("send", {"i": 1}, job_id="new"), Spec("send", {"i": 2}, job_id="taken"),
        ])

    assert await queue.counts() == before
    assert await queue.get_job("p") is None
    assert await queue.get_job("new") is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.add("p", children=["not a spec"]), "children\\[0\\]"),
        (lambda q: q.add("p", children="abc"), "list of corral.JobSpec"),
        (lambda q: q.add("p", queue="other"), "queue= is an option of a flow's children"),
        (lambda q: q.add("p", on_failure="ignore"), "on_failure="),
        (lambda q: q.add("p", children=[Spec("c", on_failure="maybe")]), "on_failure"),
        (lambda q: q.add("p", children=[Spec("c", queue="bad:name")]), "queue name"),
        (lambda q: q.add("p", children=[Spec("c", dedupe=corral.Dedupe("k"))]), "dedupe"),
        (lambda q: q.add("p", children=[Spec("c", job_id="x"), Spec("c", job_id="x")]),
         "twice"),
        (lambda q: q.add("p", children=[Spec("c", data=float("nan"))]),
         "flow.children\\[0\\].data"),
        (lambda q: q.add_bulk([Spec("p", children=[Spec("c")])]), "belongs to a flow"),
        (lambda q: q.add_bulk([Spec("p", queue="other")]), "belongs to a flow"),
    ],
)
async def test_bad_flows_are_refused_before_anything_is_written(
    queue: corral.Queue, call: Any, message: str
) -> None:
    with pytest.raises(corral.InvalidOptionError, match=message):
        await call(queue)
    assert sum((await queue.counts()).values()) == 0


async def test_broadcast_one_contract_fans_out_1000_messages(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    seen_pending: list[int] = []

    async def send(job: corral.Job) -> dict[str, Any]:
        if job.data["i"] == 500:  # halfway: the contract shows how far it has got
            contract = await job.get_parent()
            assert contract is not None
            seen_pending.append(contract.pending_children)
        return {"to": job.data["to"], "sent": True}

    async def close_contract(job: corral.Job) -> dict[str, int]:
        values = await job.children_values()
        return {"sent": sum(1 for v in values.values() if v["sent"])}

    contract = await queue.add("contract", {"contract": "C1"}, job_id="contract:C1", children=[
        Spec("message", {"i": i, "to": f"+1555{i:04d}"}, queue="messages", job_id=f"C1:{i}")
        for i in range(1000)
    ])
    assert contract.pending_children == 1000
    assert (await queue.counts())["waiting-children"] == 1

    sent = await make_worker(send, queue_name="messages", concurrency=10).run(burst=True)
    await run_burst(make_worker, "q", close_contract)

    assert sent == 1000
    assert len(seen_pending) == 1
    assert 1 <= seen_pending[0] <= 600
    await contract.refresh()
    assert contract.state == corral.JobState.COMPLETED
    assert contract.return_value == {"sent": 1000}
    children = await contract.children()
    assert len(children) == 1000
    assert {c.state for c in children} == {"completed"}


async def test_queues_sharing_a_hash_tag_run_a_flow(
    store_url: str, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    async with corral.Queue("contracts", url=store_url, clock=clock, hash_tag="bc") as queue:
        contract = await queue.add("contract", job_id="c", children=[
            Spec("message", {"i": 1}, queue="messages"),
        ])
        sent = await make_worker(echo, queue_name="messages", hash_tag="bc").run(burst=True)
        await make_worker(collect, queue_name="contracts", hash_tag="bc").run(burst=True)

        assert sent == 1
        assert (await contract.refresh()).return_value["values"] == {
            f"messages:{(await contract.children())[0].id}": 10
        }


def test_hash_tags_are_validated() -> None:
    with pytest.raises(corral.InvalidOptionError, match="hash_tag"):
        corral.Queue("q", hash_tag="{bad}")
    with pytest.raises(corral.InvalidOptionError, match="hash_tag"):
        corral.Worker("q", echo, hash_tag="")
