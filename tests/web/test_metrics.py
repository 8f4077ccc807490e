"""`/metrics`: Prometheus text read from the store at scrape time, in the app's own registry."""

from __future__ import annotations

from datetime import timedelta

import httpx
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import corral
from corral.testing import VirtualClock
from corral.web import create_app
from tests.conformance.support import WorkerFactory

from .conftest import serve


async def succeed(job: corral.Job) -> str:
    return "done"


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: list[Sample] = [
        sample for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_job_counts_by_queue_and_state(
    client: httpx.AsyncClient, queue: corral.Queue
) -> None:
    await queue.add("m")
    await queue.add("m", delay=60)
    await queue.pause()

    samples = await scrape(client)

    assert value(samples, "corral_up") == 1
    assert value(samples, "corral_jobs", queue="q", state="waiting") == 1
    assert value(samples, "corral_jobs", queue="q", state="delayed") == 1
    assert value(samples, "corral_jobs", queue="q", state="waiting-children") == 0
    assert value(samples, "corral_queue_paused", queue="q") == 1
    assert value(samples, "corral_workers", queue="q") == 0


async def test_totals_and_processing_time(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory,
    clock: VirtualClock,
) -> None:
    for _ in range(3):
        await queue.add("ok")
    await queue.add("bad")
    await make_worker({"ok": succeed, "bad": explode}).run(burst=True)

    first = await scrape(client)
    assert value(first, "corral_jobs_completed_total", queue="q") == 3
    assert value(first, "corral_jobs_failed_total", queue="q") == 1
    assert value(first, "corral_job_processing_seconds_count", queue="q") == 4
    assert value(first, "corral_job_processing_seconds_sum", queue="q") >= 0
    assert value(first, "corral_job_processing_max_seconds", queue="q") >= 0

    again = await scrape(client)  # nothing new: the counters stay put
    assert value(again, "corral_jobs_completed_total", queue="q") == 3

    await clock.advance(timedelta(minutes=3))
    await queue.add("ok")
    await make_worker(succeed).run(burst=True)
    later = await scrape(client)
    assert value(later, "corral_jobs_completed_total", queue="q") == 4
    assert value(later, "corral_job_processing_seconds_count", queue="q") == 5


async def test_counters_never_fall_as_minutes_age_out(
    client: httpx.AsyncClient, queue: corral.Queue, make_worker: WorkerFactory,
    clock: VirtualClock,
) -> None:
    await queue.add("ok")
    await make_worker(succeed).run(burst=True)
    assert value(await scrape(client), "corral_jobs_completed_total", queue="q") == 1

    await clock.advance(timedelta(hours=3))  # the minute left the store's one-hour window

    assert value(await scrape(client), "corral_jobs_completed_total", queue="q") == 1


async def test_the_store_down_is_corral_up_0(unused_port: int) -> None:
    async with serve(create_app(f"redis://127.0.0.1:{unused_port}/0")) as client:
        response = await client.get("/metrics")

    assert response.status_code == 200
    samples = {s.name: s.value for f in text_string_to_metric_families(response.text)
               for s in f.samples}
    assert samples["corral_up"] == 0


async def test_the_global_registry_is_left_alone(store_url: str) -> None:
    before = {name for name in prometheus_client.REGISTRY._names_to_collectors}
    first, second = create_app(store_url), create_app(store_url)
    async with serve(first) as one, serve(second) as two:
        assert (await one.get("/metrics")).status_code == 200
        assert (await two.get("/metrics")).status_code == 200

    assert set(prometheus_client.REGISTRY._names_to_collectors) == before
