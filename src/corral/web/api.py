"""The HTTP API: `/api/queues/...` (DESIGN.md, "HTTP API").

Handlers are thin: they find the queue and job, call the same `corral.Queue` methods a
Python user would, and shape the answer with `corral.Job.to_json()`. Errors are mapped to
status codes in one place, `corral.web.app`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, Security
from fastapi.security import HTTPBearer

from corral.errors import InvalidOptionError
from corral.job import Job
from corral.job_state import JobState
from corral.monitoring import MinuteStats
from corral.options import JobSpec, check_label
from corral.queue import Queue
from corral.web import models
from corral.web.context import WebContext, get_context
from corral.web.security import require_api

__all__ = ["SEARCH_SCAN_LIMIT", "router"]

SEARCH_SCAN_LIMIT: Final = 5000
"""A search (`?q=`) looks at no more than this many jobs of the state, next to run or newest
first, so one request costs a bounded amount of store work whatever the queue holds."""
_SCAN_PAGE: Final = 500
CHILD_JOBS_SHOWN: Final = 200
"""The children endpoint embeds the stored job of at most this many children."""
RANGES: Final[dict[str, tuple[int, int]]] = {
    # range: (span, bucket) in seconds
    "1h": (3600, 60), "24h": (86400, 900), "7d": (7 * 86400, 7200),
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.Error} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}

# The bearer scheme is declared for the OpenAPI document; `require_api` does the checking.
_BEARER = HTTPBearer(auto_error=False, description="The dashboard's token, when it has one")
router = APIRouter(
    prefix="/api", dependencies=[Security(_BEARER), Depends(require_api)], responses=_ERRORS
)

Context = Annotated[WebContext, Depends(get_context)]
QueuePath = Annotated[str, Path(
    description="The queue's name", openapi_examples={"queue": {"value": "emails"}})]
JobIdPath = Annotated[str, Path(
    description="The job's id", openapi_examples={"job": {"value": "email1:L1"}})]
ScheduleIdPath = Annotated[str, Path(
    description="The schedule's id", openapi_examples={"schedule": {"value": "daily-rollup"}})]


def require_json(request: Request) -> None:
    """Dependency of the endpoints with a JSON body: any body must say it is JSON (415)."""
    if request.headers.get("content-length", "0") == "0" and (
        "transfer-encoding" not in request.headers
    ):
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "the request body must be JSON (Content-Type: application/json)")


JsonBody = Depends(require_json)


# -- helpers ------------------------------------------------------------------------------------


async def _get_job(queue: Queue, job_id: str) -> Job:
    try:
        check_label(job_id, "job id")
    except InvalidOptionError:
        raise HTTPException(404, f"no job {job_id!r} in queue {queue.name!r}") from None
    job = await queue.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} in queue {queue.name!r}")
    return job


def _series(
    stats: list[MinuteStats], start: datetime, span: int, bucket: int
) -> list[dict[str, Any]]:
    """Gap-free buckets from per-minute stats, with averages weighted by jobs finished."""
    count = span // bucket
    rows: list[dict[str, Any]] = [
        {"start": start + timedelta(seconds=i * bucket), "completed": 0, "failed": 0,
         "processing_ms_avg": 0.0, "processing_ms_max": 0, "wait_ms_avg": 0.0, "wait_ms_max": 0}
        for i in range(count)
    ]
    for minute in stats:
        index = int((minute.minute - start).total_seconds() // bucket)
        if not 0 <= index < count:
            continue
        row, finished = rows[index], minute.completed + minute.failed
        before = row["completed"] + row["failed"]
        total = before + finished
        if total:
            for name in ("processing_ms_avg", "wait_ms_avg"):
                row[name] = (row[name] * before + getattr(minute, name) * finished) / total
        row["completed"] += minute.completed
        row["failed"] += minute.failed
        row["processing_ms_max"] = max(row["processing_ms_max"], minute.processing_ms_max)
        row["wait_ms_max"] = max(row["wait_ms_max"], minute.wait_ms_max)
    for row in rows:
        row["start"] = row["start"].isoformat()
    return rows


async def _metrics(queue: Queue, range_: str) -> tuple[int, list[dict[str, Any]]]:
    span, bucket = RANGES[range_]
    now = queue.clock.now().timestamp()
    end = datetime.fromtimestamp((now // bucket + 1) * bucket, UTC)
    start = end - timedelta(seconds=span)
    stats = await queue.metrics(since=start, until=end - timedelta(milliseconds=1))
    return bucket, _series(stats, start, span, bucket)


async def _summary(queue: Queue) -> dict[str, Any]:
    return {"name": queue.name, "counts": await queue.counts(), "paused": await queue.is_paused()}


async def _detail(queue: Queue) -> dict[str, Any]:
    summary = await _summary(queue)
    workers = await queue.workers()
    _, minutes = await _metrics(queue, "1h")
    return {
        **summary,
        "config": (await queue.config()).to_json(),
        "schedules": [schedule.to_json() for schedule in await queue.schedules()],
        "workers": len(workers),
        "no_worker": summary["counts"].get("waiting", 0) > 0 and not workers,
        "metrics": minutes,
    }


def _matches(job: Job, needle: str) -> bool:
    if needle in job.id.lower() or needle in job.name.lower():
        return True
    if any(needle in tag.lower() for tag in job.tags):
        return True
    return needle in orjson.dumps(job.data).decode().lower()


async def _search(
    queue: Queue, state: JobState, q: str, offset: int, limit: int
) -> dict[str, Any]:
    needle, scanned = q.lower(), 0
    found: list[Job] = []
    while scanned < SEARCH_SCAN_LIMIT:
        page = await queue.jobs(state, offset=scanned, limit=_SCAN_PAGE)
        scanned += len(page)
        found.extend(job for job in page if _matches(job, needle))
        if len(page) < _SCAN_PAGE:
            break
    truncated = scanned >= SEARCH_SCAN_LIMIT
    jobs = [job.to_json() for job in found[offset:offset + limit]]
    return {"state": state, "offset": offset, "limit": limit, "total": len(found),
            "jobs": jobs, "scanned": scanned, "truncated": truncated}


def _child_spec(child: models.ChildSpec) -> JobSpec:
    options = child.options.given() if child.options else {}
    return JobSpec(
        child.name, child.data, queue=child.queue, on_failure=child.on_failure,
        children=[_child_spec(grandchild) for grandchild in child.children or []], **options,
    )


# -- queues -------------------------------------------------------------------------------------


@router.get("/queues", response_model=models.QueueList)
async def list_queues(context: Context) -> dict[str, Any]:
    """Every queue with its counts and paused flag."""
    names = await context.queue_names()
    return {"queues": [await _summary(await context.queue(name)) for name in names]}


@router.get("/queues/{queue}", response_model=models.QueueDetail)
async def get_queue(queue: QueuePath, context: Context) -> dict[str, Any]:
    """One queue: counts, paused, settings, schedules, workers, the last hour's metrics."""
    return await _detail(await context.queue(queue))


@router.post("/queues/{queue}/pause", response_model=models.QueueDetail)
async def pause_queue(queue: QueuePath, context: Context) -> dict[str, Any]:
    """Stop workers taking jobs from the queue."""
    target = await context.queue(queue)
    await target.pause()
    return await _detail(target)


@router.post("/queues/{queue}/resume", response_model=models.QueueDetail)
async def resume_queue(queue: QueuePath, context: Context) -> dict[str, Any]:
    """Let workers take jobs again."""
    target = await context.queue(queue)
    await target.resume()
    return await _detail(target)


@router.post("/queues/{queue}/retry-failed", response_model=models.RetryFailedOut,
             dependencies=[JsonBody])
async def retry_failed(
    queue: QueuePath, context: Context, body: models.RetryFailedBody | None = None
) -> dict[str, Any]:
    """Send failed jobs (up to `limit`, oldest first) back to waiting."""
    target = await context.queue(queue)
    retried = await target.retry_failed(None if body is None else body.limit)
    return {**await _detail(target), "retried": retried}


@router.post("/queues/{queue}/clean", response_model=models.CleanOut, dependencies=[JsonBody])
async def clean_queue(
    queue: QueuePath, body: models.CleanBody, context: Context
) -> dict[str, Any]:
    """Remove up to `limit` jobs in `state` that finished (or were added) `grace` ago."""
    target = await context.queue(queue)
    removed = await target.clean(body.state, grace=body.grace, limit=body.limit)
    return {**await _detail(target), "removed": removed}


@router.get("/queues/{queue}/metrics", response_model=models.MetricsOut)
async def queue_metrics(
    queue: QueuePath, context: Context,
    range_: Annotated[Literal["1h", "24h", "7d"], Query(alias="range")] = "1h",
) -> dict[str, Any]:
    """Completed and failed jobs over time: 1-minute buckets (1h), 15-minute (24h), 2-hour (7d)."""
    bucket, buckets = await _metrics(await context.queue(queue), range_)
    return {
        "range": range_, "bucket_seconds": bucket, "buckets": buckets,
        "completed": sum(row["completed"] for row in buckets),
        "failed": sum(row["failed"] for row in buckets),
    }


@router.get("/queues/{queue}/workers", response_model=models.WorkerList)
async def queue_workers(queue: QueuePath, context: Context) -> dict[str, Any]:
    """The live workers of the queue."""
    workers = await (await context.queue(queue)).workers()
    return {"workers": [
        {"id": w.id, "host": w.host, "pid": w.pid, "queue": w.queue,
         "concurrency": w.concurrency, "started_at": w.started_at.isoformat(),
         "last_heartbeat": w.last_heartbeat.isoformat()}
        for w in workers
    ]}


# -- jobs ---------------------------------------------------------------------------------------


@router.get("/queues/{queue}/jobs", response_model=models.JobList)
async def list_jobs(
    queue: QueuePath, context: Context,
    state: JobState = JobState.WAITING,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    q: Annotated[str | None, Query(
        max_length=256,
        description="Search the job id, name, tags and data (case-insensitive) among the "
                    f"first {SEARCH_SCAN_LIMIT} jobs of the state",
    )] = None,
) -> dict[str, Any]:
    """A page of the jobs in one state (next to run first; finished ones newest first)."""
    target = await context.queue(queue)
    if q:
        return await _search(target, state, q, offset, limit)
    jobs = await target.jobs(state, offset=offset, limit=limit)
    total = (await target.counts()).get(state, 0)
    return {"state": state, "offset": offset, "limit": limit, "total": total,
            "jobs": [job.to_json() for job in jobs]}


@router.post(
    "/queues/{queue}/jobs", response_model=models.AddedJob, status_code=201,
    dependencies=[JsonBody],
    responses={200: {"model": models.AddedJob, "description": "The id was still stored: that "
                     "job, unchanged, with `duplicate: true`"}},
)
async def add_job(
    queue: QueuePath, body: models.AddJob, response: Response, context: Context
) -> dict[str, Any]:
    """Add a job (with `children`: a flow whose parent waits for them)."""
    target = await context.queue(queue, must_exist=False)
    options = body.options.given() if body.options else {}
    if body.children:
        options["children"] = [_child_spec(child) for child in body.children]
    job = await target.add(body.name, body.data, **options)
    if job.duplicate:
        response.status_code = 200
    return {**job.to_json(), "duplicate": job.duplicate}


# Job ids may contain "/": `{job_id:path}` takes them whole, so routes with a suffix come first.
@router.get("/queues/{queue}/jobs/{job_id:path}/children", response_model=models.ChildrenOut)
async def job_children(queue: QueuePath, job_id: JobIdPath, context: Context) -> dict[str, Any]:
    """A flow parent's children with their outcomes (and their stored jobs, while kept)."""
    job = await _get_job(await context.queue(queue), job_id)
    children = []
    for index, child in enumerate(await job.children()):
        stored = None
        if index < CHILD_JOBS_SHOWN and child.state != "removed":
            found = await (await context.queue(child.queue, must_exist=False)).get_job(child.id)
            stored = None if found is None else found.to_json()
        children.append({"queue": child.queue, "id": child.id, "state": child.state,
                         "return_value": child.return_value,
                         "failed_reason": child.failed_reason, "job": stored})
    parent = None if job.parent is None else job.parent._asdict()
    return {"parent": parent, "pending_children": job.pending_children, "children": children}


@router.get("/queues/{queue}/jobs/{job_id:path}", response_model=models.JobWithLogs)
async def get_job(queue: QueuePath, job_id: JobIdPath, context: Context) -> dict[str, Any]:
    """One job with its log lines."""
    job = await _get_job(await context.queue(queue), job_id)
    return {**job.to_json(), "logs": await job.logs()}


@router.post("/queues/{queue}/jobs/{job_id:path}/retry", response_model=models.JobOut)
async def retry_job(queue: QueuePath, job_id: JobIdPath, context: Context) -> dict[str, Any]:
    """Run a failed or completed job again with fresh attempts (409 in another state)."""
    job = await _get_job(await context.queue(queue), job_id)
    if not await job.retry():
        raise HTTPException(409, f"job {job_id!r} is {job.state}: only failed or completed "
                                 "jobs can be retried")
    return (await job.refresh()).to_json()


@router.post("/queues/{queue}/jobs/{job_id:path}/promote", response_model=models.JobOut)
async def promote_job(queue: QueuePath, job_id: JobIdPath, context: Context) -> dict[str, Any]:
    """Make a delayed job waiting now (409 when it is not delayed)."""
    job = await _get_job(await context.queue(queue), job_id)
    if not await job.promote():
        raise HTTPException(409, f"job {job_id!r} is {job.state}: only delayed jobs can be "
                                 "promoted")
    return (await job.refresh()).to_json()


@router.delete("/queues/{queue}/jobs/{job_id:path}", response_model=models.JobOut)
async def remove_job(queue: QueuePath, job_id: JobIdPath, context: Context) -> dict[str, Any]:
    """Remove a job (409 while a worker holds it); answers with the job as it was."""
    job = await _get_job(await context.queue(queue), job_id)
    if not await job.remove():
        raise HTTPException(404, f"no job {job_id!r} in queue {queue!r}")
    return job.to_json()


# -- schedules ----------------------------------------------------------------------------------


@router.get("/queues/{queue}/schedules", response_model=models.ScheduleList)
async def list_schedules(queue: QueuePath, context: Context) -> dict[str, Any]:
    """Every schedule of the queue with its next and last run."""
    schedules = await (await context.queue(queue)).schedules()
    return {"schedules": [schedule.to_json() for schedule in schedules]}


@router.put("/queues/{queue}/schedules/{schedule_id}", response_model=models.ScheduleOut,
            dependencies=[JsonBody])
async def put_schedule(
    queue: QueuePath, schedule_id: ScheduleIdPath, body: models.ScheduleBody, context: Context
) -> dict[str, Any]:
    """Create or update a schedule (identical arguments change nothing)."""
    target = await context.queue(queue, must_exist=False)
    options = body.options.given() if body.options else {}
    schedule = await target.schedule(
        schedule_id, cron=body.cron, every=body.every, tz=body.tz, job_name=body.job_name,
        data=body.data, start=body.start, end=body.end, limit=body.limit, **options,
    )
    return schedule.to_json()


@router.delete("/queues/{queue}/schedules/{schedule_id}", response_model=models.Removed)
async def delete_schedule(
    queue: QueuePath, schedule_id: ScheduleIdPath, context: Context
) -> dict[str, Any]:
    """Remove a schedule and its planned tick."""
    target = await context.queue(queue)
    try:
        removed = await target.unschedule(schedule_id)
    except InvalidOptionError:
        removed = False
    if not removed:
        raise HTTPException(404, f"no schedule {schedule_id!r} in queue {queue!r}")
    return {"id": schedule_id, "removed": True}
