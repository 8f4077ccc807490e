"""The HTTP API's request and response bodies (they are also its OpenAPI schema).

Request models check shapes and types and refuse unknown keys (422); the values then go
through corral's own validation (`JobOptions`, `ScheduleSpec`), whose `InvalidOptionError`
becomes a 422 with its message, so HTTP accepts exactly what Python accepts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
)

__all__ = [
    "AddJob",
    "AddedJob",
    "ChildOut",
    "ChildSpec",
    "ChildrenOut",
    "CleanBody",
    "CleanOut",
    "Error",
    "Health",
    "JobList",
    "JobOptionsBody",
    "JobOut",
    "JobWithLogs",
    "MetricsOut",
    "QueueDetail",
    "QueueList",
    "QueueSummary",
    "Removed",
    "RetryFailedBody",
    "RetryFailedOut",
    "ScheduleBody",
    "ScheduleList",
    "ScheduleOut",
    "WorkerList",
]

Label = Annotated[str, Field(min_length=1, max_length=256)]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Seconds = StrictInt | StrictFloat


def _iso_text(value: object) -> object:
    # pydantic would also take epoch numbers for a datetime; the API documents ISO 8601 text.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time, e.g. 2026-02-24T12:00:00+00:00")
    return value


Moment = Annotated[datetime, BeforeValidator(_iso_text)]
IsoTime = Annotated[str, Field(description="ISO 8601 time with its UTC offset")]
Duration = Annotated[Seconds | str, Field(description='Seconds, or a string like "500ms", "30m"')]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- request bodies ------------------------------------------------------------------------------


class BackoffBody(_Body):
    """A backoff in its JSON form."""

    type: Literal["fixed", "exponential", "custom", "worker"]
    delay: Duration | None = None
    cap: Duration | None = None
    jitter: Seconds | None = None
    delays: list[Duration] | None = None


class KeepBody(_Body):
    """Retention: keep the newest `count` and/or those younger than `age`."""

    count: StrictInt | None = None
    age: Duration | None = None


class DedupeBody(_Body):
    """Deduplication by key (see `corral.Dedupe`)."""

    key: Label
    ttl: Duration | None = None
    replace: StrictBool = False


Retention = StrictBool | StrictInt | KeepBody


class JobOptionsBody(_Body):
    """`add`'s keyword options; only those given are passed on."""

    delay: Duration | None = None
    run_at: Moment | None = None
    attempts: StrictInt | None = None
    backoff: BackoffBody | None = None
    job_id: Label | None = None
    priority: StrictInt | None = None
    lifo: StrictBool | None = None
    tags: list[Label] | None = None
    group: Label | None = None
    timeout: Duration | None = None
    remove_on_complete: Retention | None = None
    remove_on_fail: Retention | None = None
    dedupe: DedupeBody | None = None

    def given(self) -> dict[str, Any]:
        """The options set in the body, as `add` keywords (None means "not given",
        except for the options where None is a value of its own)."""
        values: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None and name not in {"backoff", "group", "timeout", "dedupe"}:
                continue
            values[name] = value.model_dump(exclude_unset=True) if isinstance(
                value, BaseModel) else value
        return values


class ChildSpec(_Body):
    """A child job of a flow."""

    name: Label
    data: JsonValue = None
    queue: QueueName | None = None
    options: JobOptionsBody | None = None
    on_failure: Literal["fail_parent", "ignore"] = "fail_parent"
    children: list[ChildSpec] | None = None


class AddJob(_Body):
    """`POST /api/queues/{queue}/jobs`: a job, its options and (for a flow) its children."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "email1", "data": {"leadId": "L1", "email": "a@example.com"},
         "options": {"delay": "30m", "attempts": 3, "job_id": "email1:L1",
                     "backoff": {"type": "exponential", "delay": 60}, "tags": ["lead:L1"]}},
        {"name": "report", "data": {"day": "2026-02-24"},
         "children": [{"name": "fetch", "data": {"part": 1}},
                      {"name": "fetch", "data": {"part": 2}, "queue": "fetching",
                       "on_failure": "ignore"}]},
    ]})

    name: Label
    data: JsonValue = None
    options: JobOptionsBody | None = None
    children: list[ChildSpec] | None = None


class CleanBody(_Body):
    """`POST /api/queues/{queue}/clean`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"state": "completed", "grace": "1h", "limit": 1000},
    ]})

    state: Literal["waiting", "delayed", "completed", "failed", "waiting-children"]
    grace: Duration = 0
    limit: StrictInt = Field(1000, ge=1)


class RetryFailedBody(_Body):
    """`POST /api/queues/{queue}/retry-failed` (an empty body retries every failed job)."""

    limit: StrictInt | None = Field(None, ge=1)


class ScheduleBody(_Body):
    """`PUT /api/queues/{queue}/schedules/{id}`: exactly one of `cron` and `every`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"cron": "0 2 * * *", "tz": "UTC", "job_name": "rollup", "data": {},
         "options": {"attempts": 2}},
        {"every": "5m", "job_name": "healthCheck"},
    ]})

    cron: str | None = None
    every: Duration | None = None
    tz: str = "UTC"
    job_name: Label | None = None
    data: JsonValue = None
    start: Moment | None = None
    end: Moment | None = None
    limit: StrictInt | None = None
    options: JobOptionsBody | None = None


# -- responses -----------------------------------------------------------------------------------


class Error(BaseModel):
    """Every 4xx and 5xx answer: a message, or FastAPI's list of validation errors."""

    detail: str | list[dict[str, Any]]


class Health(BaseModel):
    """`GET /health`."""

    status: Literal["ok", "unavailable"]
    backend: str


class JobRefOut(BaseModel):
    """Where a flow's parent lives."""

    queue: str
    id: str


class JobOut(_Out):
    """A job (`corral.Job.to_json()`)."""

    id: str
    name: str
    queue: str
    data: JsonValue
    state: str
    attempts_made: int
    stalled_count: int
    progress: JsonValue
    return_value: JsonValue
    failed_reason: str | None
    stacktrace: str | None
    created_at: IsoTime | None
    processed_at: IsoTime | None
    finished_at: IsoTime | None
    run_at: IsoTime | None
    priority: int
    tags: list[str]
    group: str | None
    options: dict[str, JsonValue]
    parent: JobRefOut | None = None
    pending_children: int = 0


class AddedJob(JobOut):
    """The job `POST .../jobs` added, or found already stored (`duplicate`)."""

    duplicate: bool = Field(description="The id was still stored: this is that job, unchanged")


class JobWithLogs(JobOut):
    """A job with its log lines (the single-job endpoint)."""

    logs: list[str]


class JobList(BaseModel):
    """A page of the jobs in one state; with `q`, of those matching it."""

    state: str
    offset: int
    limit: int
    total: int = Field(description="Jobs in the state (without q) or matches found (with q)")
    jobs: list[JobOut]
    scanned: int | None = Field(None, description="With q: how many jobs were searched")
    truncated: bool = Field(False, description="With q: the search stopped at its bound")


class ChildOut(BaseModel):
    """A child of a flow's parent, as the parent sees it."""

    queue: str
    id: str
    state: Literal["pending", "completed", "failed", "removed"]
    return_value: JsonValue = None
    failed_reason: str | None = None
    job: JobOut | None = Field(None, description="The child job while it is stored")


class ChildrenOut(BaseModel):
    """`GET .../jobs/{id}/children`."""

    parent: JobRefOut | None
    pending_children: int
    children: list[ChildOut]


class Removed(BaseModel):
    """A removed job or schedule."""

    id: str
    removed: bool


class ScheduleOut(BaseModel):
    """A schedule with its next and last run (`corral.Schedule.to_json()`)."""

    id: str
    cron: str | None
    every: float | None
    tz: str
    job_name: str
    data: JsonValue
    options: dict[str, JsonValue]
    start: IsoTime | None
    end: IsoTime | None
    limit: int | None
    next_run: IsoTime | None
    last_run: IsoTime | None
    count: int


class ScheduleList(BaseModel):
    """`GET /api/queues/{queue}/schedules`."""

    schedules: list[ScheduleOut]


class MinuteOut(BaseModel):
    """What finished in one bucket of time."""

    start: IsoTime
    completed: int
    failed: int
    processing_ms_avg: float
    processing_ms_max: int
    wait_ms_avg: float
    wait_ms_max: int


class MetricsOut(BaseModel):
    """`GET .../metrics`: a gap-free series of buckets, oldest first."""

    range: Literal["1h", "24h", "7d"]
    bucket_seconds: int
    buckets: list[MinuteOut]
    completed: int
    failed: int


class WorkerOut(BaseModel):
    """A live worker."""

    id: str
    host: str
    pid: int
    queue: str
    concurrency: int
    started_at: IsoTime
    last_heartbeat: IsoTime


class WorkerList(BaseModel):
    """`GET .../workers`."""

    workers: list[WorkerOut]


class QueueSummary(BaseModel):
    """A queue in the list of queues."""

    name: str
    counts: dict[str, int]
    paused: bool


class QueueList(BaseModel):
    """`GET /api/queues`."""

    queues: list[QueueSummary]


class QueueDetail(QueueSummary):
    """One queue: counts, settings, schedules, workers and the last hour's metrics."""

    config: dict[str, JsonValue]
    schedules: list[ScheduleOut]
    workers: int
    no_worker: bool = Field(description="Jobs are waiting and no live worker serves the queue")
    metrics: list[MinuteOut]


class RetryFailedOut(QueueDetail):
    """The queue after `retry-failed`, and how many jobs went back to waiting."""

    retried: int


class CleanOut(QueueDetail):
    """The queue after `clean`, and the ids removed."""

    removed: list[str]
