"""The HTTP API on every store: each endpoint's answer, and its 4xx cases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

import corral
from corral.testing import VirtualClock
from tests.conformance.support import WorkerFactory, WorkerStarter, hold_active

from .conftest import ClientFactory

JOB_FIELDS = {
    "id", "name", "queue", "data", "state", "attempts_made", "stalled_count", "progress",
    "return_value", "failed_reason", "stacktrace", "created_at", "processed_at",
    "finished_at", "run_at", "priority", "tags", "group", "options", "parent",
    "pending_children",
}


async def succeed(job: corral.Job) -> str:
    await job.log("working")
    return "done"


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


async def add(client: httpx.AsyncClient, queue: str = "q", **body: Any) -> dict[str, Any]:
    body.setdefault("name", "m")
    response = await client.post(f"/api/queues/{queue}/jobs", json=body)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


# -- queues ---------------------------------------------------------------------------------------


async def test_no_queues_at_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/queues")

    assert response.status_code == 200
    assert response.json() == {"queues": []}


async def test_queue_list_has_counts_and_paused(client: httpx.AsyncClient) -> None:
    await add(client, "a")
    await add(client, "b", options={"delay": "5m"})

    queues = (await client.get("/api/queues")).json()["queues"]

    assert [q["name"] for q in queues] == ["a", "b"]
    assert queues[0]["counts"]["waiting"] == 1
    assert queues[1]["counts"]["delayed"] == 1
    assert queues[0]["paused"] is False


async def test_queue_detail(client: httpx.AsyncClient, queue: corral.Queue) -> None:
    await queue.configure(concurrency=3)
    await queue.schedule("tick", every=60)
    await add(client)

    detail = (await client.get("/api/queues/q")).json()

    assert detail["name"] == "q"
    assert detail["counts"]["waiting"] >= 1
    assert detail["paused"] is False
    assert detail["config"]["concurrency"] == 3
    assert [s["id"] for s in detail["schedules"]] == ["tick"]
    assert detail["schedules"][0]["every"] == 60
    assert detail["workers"] == 0
    assert detail["no_worker"] is True
    assert len(detail["metrics"]) == 60


async def test_queue_detail_counts_workers(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    job = await queue.add("m")
    await hold_active(queue, make_worker, start_worker, job.id)

    detail = (await client.get("/api/queues/q")).json()
    workers = (await client.get("/api/queues/q/workers")).json()["workers"]

    assert (detail["workers"], detail["no_worker"]) == (1, False)
    assert len(workers) == 1
    assert workers[0]["queue"] == "q"
    assert workers[0]["concurrency"] >= 1


@pytest.mark.parametrize("path", [
    "/api/queues/nope", "/api/queues/nope/jobs", "/api/queues/nope/jobs/x",
    "/api/queues/nope/metrics", "/api/queues/nope/workers", "/api/queues/nope/schedules",
    "/api/queues/bad%20name", "/api/queues/" + "x" * 65,
])
async def test_unknown_queue_is_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert "no queue" in response.json()["detail"]


@pytest.mark.parametrize("action", ["pause", "resume", "retry-failed"])
async def test_actions_on_unknown_queue_are_404(client: httpx.AsyncClient, action: str) -> None:
    response = await client.post(f"/api/queues/nope/{action}")

    assert response.status_code == 404


async def test_pause_and_resume(client: httpx.AsyncClient, queue: corral.Queue) -> None:
    await add(client)

    paused = await client.post("/api/queues/q/pause")
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    assert await queue.is_paused()

    resumed = await client.post("/api/queues/q/resume")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert not await queue.is_paused()


async def test_retry_failed(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    for _ in range(3):
        await queue.add("m")
    await make_worker(explode).run(burst=True)

    one = await client.post("/api/queues/q/retry-failed", json={"limit": 1})
    rest = await client.post("/api/queues/q/retry-failed")

    assert (one.status_code, one.json()["retried"]) == (200, 1)
    assert rest.json()["retried"] == 2
    assert rest.json()["counts"]["waiting"] == 3


async def test_retry_failed_refuses_a_bad_limit(client: httpx.AsyncClient) -> None:
    await add(client)

    response = await client.post("/api/queues/q/retry-failed", json={"limit": 0})

    assert response.status_code == 422


async def test_clean(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory,
    clock: VirtualClock,
) -> None:
    job = await queue.add("m")
    await make_worker(succeed).run(burst=True)
    await clock.advance(timedelta(hours=2))

    kept = await client.post("/api/queues/q/clean", json={"state": "completed", "grace": "3h"})
    cleaned = await client.post("/api/queues/q/clean", json={"state": "completed",
                                                              "grace": 3600})

    assert (kept.status_code, kept.json()["removed"]) == (200, [])
    assert (cleaned.status_code, cleaned.json()["removed"]) == (200, [job.id])
    assert cleaned.json()["counts"]["completed"] == 0


@pytest.mark.parametrize("body", [
    {}, {"state": "active"}, {"state": "nope"}, {"state": "failed", "grace": "soon"},
    {"state": "failed", "grace": -1}, {"state": "failed", "limit": 0},
    {"state": "failed", "limit": "10"}, {"state": "failed", "extra": True},
])
async def test_clean_refuses_bad_bodies(
    sqlite_client: httpx.AsyncClient, body: Any
) -> None:
    await add(sqlite_client)

    response = await sqlite_client.post("/api/queues/q/clean", json=body)

    assert response.status_code == 422
    assert response.json()["detail"]


async def test_metrics_series(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    for _ in range(2):
        await queue.add("ok")
    await queue.add("bad")
    await make_worker({"ok": succeed, "bad": explode}).run(burst=True)

    hour = (await client.get("/api/queues/q/metrics")).json()
    day = (await client.get("/api/queues/q/metrics", params={"range": "24h"})).json()
    week = (await client.get("/api/queues/q/metrics", params={"range": "7d"})).json()

    assert (hour["range"], hour["bucket_seconds"], len(hour["buckets"])) == ("1h", 60, 60)
    assert (day["bucket_seconds"], len(day["buckets"])) == (900, 96)
    assert (week["bucket_seconds"], len(week["buckets"])) == (7200, 84)
    for series in (hour, day, week):
        assert (series["completed"], series["failed"]) == (2, 1)
        assert series["buckets"][-1]["completed"] == 2  # the current bucket is the last one
    assert (await client.get("/api/queues/q/metrics", params={"range": "2y"})).status_code == 422


# -- jobs -----------------------------------------------------------------------------------------


async def test_add_job(client: httpx.AsyncClient, queue: corral.Queue) -> None:
    response = await client.post("/api/queues/q/jobs", json={
        "name": "email", "data": {"to": "a@example.com"},
        "options": {"job_id": "j1", "attempts": 3, "backoff": {"type": "fixed", "delay": "30s"},
                    "priority": 2, "tags": ["lead:1"], "remove_on_complete": True},
    })

    assert response.status_code == 201
    job = response.json()
    assert set(job) >= JOB_FIELDS
    assert (job["id"], job["name"], job["data"], job["state"]) == (
        "j1", "email", {"to": "a@example.com"}, "waiting")
    assert job["duplicate"] is False
    assert job["options"]["attempts"] == 3
    assert job["options"]["backoff"] == {"type": "fixed", "delay": 30.0}
    stored = await queue.get_job("j1")
    assert stored is not None
    assert (stored.priority, stored.tags) == (2, ("lead:1",))


async def test_add_job_creates_the_queue(client: httpx.AsyncClient) -> None:
    await add(client, "fresh")

    assert (await client.get("/api/queues/fresh")).status_code == 200


async def test_add_delayed_and_run_at(client: httpx.AsyncClient, clock: VirtualClock) -> None:
    delayed = await add(client, options={"delay": "30m"})
    at = clock.now() + timedelta(hours=1)
    scheduled = await add(client, options={"run_at": at.isoformat()})

    assert delayed["state"] == scheduled["state"] == "delayed"
    assert delayed["run_at"] == (clock.now() + timedelta(minutes=30)).isoformat()


async def test_add_a_stored_id_is_a_duplicate(client: httpx.AsyncClient) -> None:
    first = await client.post("/api/queues/q/jobs",
                              json={"name": "m", "data": 1, "options": {"job_id": "j1"}})
    again = await client.post("/api/queues/q/jobs",
                              json={"name": "m", "data": 2, "options": {"job_id": "j1"}})

    assert first.status_code == 201
    assert again.status_code == 200
    assert (again.json()["duplicate"], again.json()["data"]) == (True, 1)


@pytest.mark.parametrize(("body", "message"), [
    ({"name": "m", "options": {"attempts": 0}}, "attempts"),
    ({"name": "m", "options": {"delay": "soon"}}, "delay"),
    ({"name": "m", "options": {"delay": 5, "run_at": "2030-01-01T00:00:00+00:00"}}, "both"),
    ({"name": "m", "options": {"run_at": "2030-01-01T00:00:00"}}, "aware"),
    ({"name": "m", "options": {"backoff": {"type": "sometimes"}}}, ""),
    ({"name": "m", "options": {"remove_on_complete": -1}}, "remove_on_complete"),
    ({"name": "m", "options": {"priority": 10**9}}, "priority"),
    ({"name": "m", "options": {"tags": ["ok", "bad\n"]}}, "control"),
    ({"name": "m", "options": {"unknown": 1}}, ""),
    ({"name": "m", "options": {"attempts": "3"}}, ""),
    ({"name": "m", "options": {"lifo": "yes"}}, ""),
    ({"name": ""}, ""),
    ({"name": "a\x00b"}, "control"),
    ({"data": {}}, ""),
    ({"name": "m", "extra": 1}, ""),
    ({"name": 5}, ""),
    ([1, 2], ""),
    ({"name": "m", "children": [{"name": "c", "on_failure": "explode"}]}, ""),
    ({"name": "m", "children": [{"name": "c", "queue": "bad name"}]}, ""),
])
async def test_add_refuses_bad_bodies(
    sqlite_client: httpx.AsyncClient, body: Any, message: str
) -> None:
    response = await sqlite_client.post("/api/queues/q/jobs", json=body)

    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])


async def test_add_refuses_data_that_is_not_strict_json(
    sqlite_client: httpx.AsyncClient,
) -> None:
    body = b'{"name": "m", "data": {"x": NaN}}'

    response = await sqlite_client.post("/api/queues/q/jobs", content=body,
                                 headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert "data.x" in response.json()["detail"]


async def test_add_refuses_a_payload_over_max_payload(
    client: httpx.AsyncClient, queue: corral.Queue
) -> None:
    await queue.configure(max_payload=100)

    response = await client.post("/api/queues/q/jobs", json={"name": "m", "data": "x" * 200})

    assert response.status_code == 413
    assert "max_payload" in response.json()["detail"]


@pytest.mark.parametrize("content", [b"{", b"", b"null", b"\xff\xfe", b'{"name": "m"} trailing'])
async def test_add_refuses_malformed_json(
    sqlite_client: httpx.AsyncClient, content: bytes
) -> None:
    response = await sqlite_client.post("/api/queues/q/jobs", content=content,
                                 headers={"content-type": "application/json"})

    assert response.status_code in (400, 422)
    assert response.json()["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", ""])
async def test_add_refuses_bodies_that_are_not_json(
    sqlite_client: httpx.AsyncClient, content_type: str
) -> None:
    response = await sqlite_client.post("/api/queues/q/jobs", content=b'{"name": "m"}',
                                 headers={"content-type": content_type})

    assert response.status_code == 415
    assert "JSON" in response.json()["detail"]


async def test_add_refuses_a_body_over_the_limit(make_client: ClientFactory) -> None:
    async with make_client(max_body=1000) as client:
        declared = await client.post("/api/queues/q/jobs",
                                     json={"name": "m", "data": "x" * 2000})

        async def chunks() -> Any:  # chunked: no Content-Length to check up front
            yield b'{"name": "m", "data": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        streamed = await client.post("/api/queues/q/jobs", content=chunks(),
                                     headers={"content-type": "application/json"})

    assert declared.status_code == streamed.status_code == 413
    assert "larger than 1000 bytes" in streamed.json()["detail"]


async def test_add_refuses_deeply_nested_data(sqlite_client: httpx.AsyncClient) -> None:
    body = b'{"name": "m", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    response = await sqlite_client.post("/api/queues/q/jobs", content=body,
                                 headers={"content-type": "application/json"})

    assert 400 <= response.status_code < 500


async def test_get_job_with_logs(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {"n": 1})
    await make_worker(succeed).run(burst=True)

    response = await client.get(f"/api/queues/q/jobs/{job.id}")

    assert response.status_code == 200
    body = response.json()
    assert JOB_FIELDS | {"logs"} <= set(body)
    assert (body["state"], body["return_value"], body["logs"]) == ("completed", "done",
                                                                    ["working"])
    assert body["finished_at"] is not None


@pytest.mark.parametrize("job_id", ["nope", "a%00b", "x" * 300])
async def test_unknown_job_is_404(client: httpx.AsyncClient, job_id: str) -> None:
    await add(client)

    for method, suffix in (("GET", ""), ("POST", "/retry"), ("POST", "/promote"),
                           ("DELETE", ""), ("GET", "/children")):
        response = await client.request(method, f"/api/queues/q/jobs/{job_id}{suffix}")
        assert response.status_code == 404, (method, suffix)
        assert "no job" in response.json()["detail"]


async def test_job_ids_with_slashes_and_colons(client: httpx.AsyncClient) -> None:
    await add(client, options={"job_id": "email:L1/2"})

    response = await client.get("/api/queues/q/jobs/email:L1%2F2")

    assert response.status_code in (200, 404)  # %2F is a path separator to some servers
    assert (await client.get("/api/queues/q/jobs/email:L1")).status_code == 404


async def test_list_jobs(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await add(client, options={"job_id": f"j{i}"})

    first = (await client.get("/api/queues/q/jobs", params={"limit": 2})).json()
    second = (await client.get("/api/queues/q/jobs",
                               params={"state": "waiting", "offset": 2, "limit": 2})).json()
    failed = (await client.get("/api/queues/q/jobs", params={"state": "failed"})).json()

    assert (first["state"], first["total"]) == ("waiting", 5)
    assert [job["id"] for job in first["jobs"]] == ["j0", "j1"]
    assert [job["id"] for job in second["jobs"]] == ["j2", "j3"]
    assert failed["jobs"] == []


@pytest.mark.parametrize("params", [
    {"state": "nope"}, {"offset": -1}, {"limit": 0}, {"limit": 1001}, {"limit": "x"},
    {"q": "x" * 300},
])
async def test_list_jobs_refuses_bad_queries(
    sqlite_client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    await add(sqlite_client)

    response = await sqlite_client.get("/api/queues/q/jobs", params=params)

    assert response.status_code == 422


async def test_search_jobs(client: httpx.AsyncClient) -> None:
    await add(client, name="email", data={"to": "ann@example.com"}, options={"job_id": "a"})
    await add(client, name="sms", data={"to": "+44"}, options={"job_id": "b",
                                                                "tags": ["lead:L7"]})
    await add(client, name="call", data=None, options={"job_id": "needle-c"})

    async def search(q: str) -> list[str]:
        body = (await client.get("/api/queues/q/jobs", params={"q": q})).json()
        assert body["scanned"] == 3
        return [job["id"] for job in body["jobs"]]

    assert await search("ANN@") == ["a"]  # data, case-insensitive
    assert await search("sms") == ["b"]  # name
    assert await search("lead:l7") == ["b"]  # tag
    assert await search("needle") == ["needle-c"]  # id
    assert await search("nothing") == []


async def test_retry_and_promote(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    failed = await queue.add("m")
    await make_worker(explode).run(burst=True)
    delayed = await queue.add("m", delay=60)

    retried = await client.post(f"/api/queues/q/jobs/{failed.id}/retry")
    promoted = await client.post(f"/api/queues/q/jobs/{delayed.id}/promote")

    assert (retried.status_code, retried.json()["state"]) == (200, "waiting")
    assert (promoted.status_code, promoted.json()["state"]) == (200, "waiting")
    again = await client.post(f"/api/queues/q/jobs/{delayed.id}/promote")
    not_failed = await client.post(f"/api/queues/q/jobs/{delayed.id}/retry")
    assert again.status_code == not_failed.status_code == 409


async def test_remove_job(client: httpx.AsyncClient, queue: corral.Queue) -> None:
    job = await queue.add("m")

    response = await client.delete(f"/api/queues/q/jobs/{job.id}")

    assert (response.status_code, response.json()["id"]) == (200, job.id)
    assert await queue.get_job(job.id) is None
    assert (await client.delete(f"/api/queues/q/jobs/{job.id}")).status_code == 404


async def test_remove_active_job_is_409(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    job = await queue.add("m")
    await hold_active(queue, make_worker, start_worker, job.id)

    response = await client.delete(f"/api/queues/q/jobs/{job.id}")

    assert response.status_code == 409
    assert response.json()["detail"]


# -- flows ----------------------------------------------------------------------------------------


async def test_add_flow_and_read_its_children(
    client: httpx.AsyncClient, make_worker: WorkerFactory
) -> None:
    parent = await add(client, name="report", children=[
        {"name": "fetch", "data": {"n": 1}, "options": {"job_id": "c1"}},
        {"name": "fetch", "queue": "other", "on_failure": "ignore",
         "options": {"job_id": "c2"}, "children": [{"name": "deep", "queue": "other"}]},
    ])

    assert parent["state"] == "waiting-children"
    assert parent["pending_children"] == 2
    await make_worker(succeed).run(burst=True)
    response = await client.get(f"/api/queues/q/jobs/{parent['id']}/children")

    assert response.status_code == 200
    body = response.json()
    assert body["pending_children"] == 1
    children = {child["id"]: child for child in body["children"]}
    assert children["c1"]["state"] == "completed"
    assert children["c1"]["return_value"] == "done"
    assert children["c1"]["job"]["name"] == "fetch"
    assert (children["c2"]["queue"], children["c2"]["state"]) == ("other", "pending")
    assert children["c2"]["job"]["state"] == "waiting-children"
    child = (await client.get("/api/queues/q/jobs/c1")).json()
    assert child["parent"] == {"queue": "q", "id": parent["id"]}


async def test_children_of_a_plain_job(client: httpx.AsyncClient) -> None:
    job = await add(client)

    body = (await client.get(f"/api/queues/q/jobs/{job['id']}/children")).json()

    assert body == {"parent": None, "pending_children": 0, "children": []}


# -- schedules ------------------------------------------------------------------------------------


async def test_put_list_and_delete_schedule(client: httpx.AsyncClient) -> None:
    put = await client.put("/api/queues/q/schedules/rollup", json={
        "cron": "0 2 * * *", "tz": "Europe/London", "job_name": "rollup", "data": {"a": 1},
        "options": {"attempts": 2},
    })

    assert put.status_code == 200
    schedule = put.json()
    assert (schedule["id"], schedule["cron"], schedule["tz"]) == ("rollup", "0 2 * * *",
                                                                  "Europe/London")
    assert schedule["next_run"] is not None
    assert schedule["options"] == {"attempts": 2}
    listed = (await client.get("/api/queues/q/schedules")).json()["schedules"]
    assert [s["id"] for s in listed] == ["rollup"]

    deleted = await client.delete("/api/queues/q/schedules/rollup")
    assert deleted.json() == {"id": "rollup", "removed": True}
    assert (await client.delete("/api/queues/q/schedules/rollup")).status_code == 404


async def test_put_schedule_every(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/queues/q/schedules/hc", json={"every": "5m"})

    assert (response.status_code, response.json()["every"]) == (200, 300)


@pytest.mark.parametrize("body", [
    {}, {"cron": "0 2 * * *", "every": 60}, {"cron": "nonsense"}, {"every": 0},
    {"every": "5m", "tz": "Mars/Base"}, {"every": "5m", "options": {"job_id": "x"}},
    {"every": "5m", "limit": 0}, {"every": "5m", "bogus": 1},
    {"every": "5m", "start": "2030-01-01T00:00:00+00:00", "end": "2029-01-01T00:00:00+00:00"},
])
async def test_put_schedule_refuses_bad_bodies(
    sqlite_client: httpx.AsyncClient, body: Any
) -> None:
    response = await sqlite_client.put("/api/queues/q/schedules/s", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_put_schedule_refuses_a_bad_id(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.put("/api/queues/q/schedules/" + "x" * 300,
                                       json={"every": 60})

    assert response.status_code == 422


# -- the service endpoints ------------------------------------------------------------------------


async def test_health(client: httpx.AsyncClient, store_url: str) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "backend": store_url.split(":")[0]}


async def test_health_is_503_when_the_store_is_down(unused_port: int) -> None:
    from corral.web import create_app

    from .conftest import serve

    async with serve(create_app(f"redis://127.0.0.1:{unused_port}/0")) as client:
        health = await client.get("/health")
        api = await client.get("/api/queues")

    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "backend": "redis"}
    assert api.status_code == 503
    assert api.json()["detail"]


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/queues/{queue}/jobs/{job_id}" in paths
    assert "/health" in paths
    assert "/login" not in paths


async def test_add_to_a_bad_queue_name_is_422(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post("/api/queues/bad%20name/jobs", json={"name": "m"})

    assert response.status_code == 422
    assert "queue name" in response.json()["detail"]


async def test_job_ids_with_slashes_reach_every_job_route(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    await add(client, name="m", options={"job_id": "lead/L1/email1"})
    await add(client, name="m", options={"job_id": "lead/L1/later", "delay": 60})
    await make_worker(explode).run(burst=True)
    base = "/api/queues/q/jobs/lead/L1"

    assert (await client.get(f"{base}/email1")).json()["state"] == "failed"
    assert (await client.get(f"{base}/email1/children")).json()["children"] == []
    assert (await client.post(f"{base}/email1/retry")).json()["state"] == "waiting"
    assert (await client.post(f"{base}/later/promote")).json()["state"] == "waiting"
    assert (await client.delete(f"{base}/email1")).status_code == 200
    assert await queue.get_job("lead/L1/email1") is None
