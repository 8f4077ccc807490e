"""The dashboard's HTML pages: server-rendered from the JSON API's own answers.

Each page calls the `/api` handlers of `corral.web.api` as plain functions, so a page
shows exactly what the API would answer, in the same shapes (times are ISO 8601 text).
`static/corral.js` refreshes a page in place: it fetches the page's own URL every few
seconds and swaps the elements marked `data-live`, and it performs actions through the
API. Everything a user may change in place (tab, page, search, chart range) lives in the
URL query, so a refresh, a reload or a shared link keeps it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from corral import __version__
from corral.errors import BackendUnavailableError
from corral.job_state import JobState
from corral.web import api
from corral.web.context import WebContext, get_context
from corral.web.security import csrf_token, page_auth

__all__ = ["PAGE_SIZE", "REFRESH_MS", "router"]

PAGE_SIZE: Final = 25
"""Jobs per page of a queue's job table."""
REFRESH_MS: Final = 3000
"""How often an open page refreshes itself."""
FLOW_NODES_SHOWN: Final = 60
"""A flow tree shows at most this many jobs (more: a note, and each job page shows its own)."""
FLOW_DEPTH: Final = 4
FLOW_ANCESTORS: Final = 8
STATES: Final = (
    JobState.WAITING, JobState.ACTIVE, JobState.DELAYED, JobState.WAITING_CHILDREN,
    JobState.COMPLETED, JobState.FAILED,
)
Range = Literal["1h", "24h", "7d"]
_RANGE_NAMES: Final[dict[str, Range]] = {"1h": "1h", "24h": "24h", "7d": "7d"}
RANGE_LABELS: Final = {"1h": "1 hour ago", "24h": "24 hours ago", "7d": "7 days ago"}
_HERE: Final = Path(__file__).parent


def _asset_version() -> str:
    """Changes whenever the CSS or JS does, so browsers never run a stale copy."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted((_HERE / "static").glob("*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# -- formatting (Jinja filters) -----------------------------------------------------------------


def _moment(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _span(seconds: float) -> str:
    """A short human duration: 850 ms, 42 s, 5 min, 3 h 10 min, 2 d 4 h."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{round(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(value: datetime | str | None, now: datetime) -> str:
    """`5 min ago` or `in 5 min` (— for no time)."""
    moment = _moment(value)
    if moment is None:
        return "—"
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    return f"{_span(seconds)} ago" if seconds > 0 else f"in {_span(seconds)}"


def utc(value: datetime | str | None) -> str:
    """A full UTC timestamp (the page's script shows it in the reader's zone)."""
    moment = _moment(value)
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def took(start: datetime | str | None, end: datetime | str | None) -> str:
    """How long from `start` to `end` (— when either is missing)."""
    first, last = _moment(start), _moment(end)
    return "—" if first is None or last is None else _span((last - first).total_seconds())


def seconds(value: float | None) -> str:
    """An interval in seconds as `every 5 min`."""
    return "—" if value is None else _span(value)


def pretty(value: Any) -> str:
    """JSON, indented."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def brief(value: Any, length: int = 100) -> str:
    """JSON on one line, cut to `length` characters."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= length else text[: length - 1] + "…"


def percent(progress: Any) -> float | None:
    """A numeric progress as 0–100 (None for other progress values)."""
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        return None
    if not math.isfinite(progress):
        return None
    return max(0.0, min(100.0, float(progress)))


def segment(text: str) -> str:
    """One URL path segment (job ids may hold `/`, `?`, `#`, `:`)."""
    return quote(text, safe="")


TEMPLATES: Final = Jinja2Templates(directory=_HERE / "templates")
TEMPLATES.env.filters.update(
    ago=ago, utc=utc, took=took, seconds=seconds, pretty=pretty, brief=brief,
    percent=percent, segment=segment,
)
TEMPLATES.env.globals.update(
    STATES=STATES, RANGE_LABELS=RANGE_LABELS, RANGES=tuple(_RANGE_NAMES), PAGE_SIZE=PAGE_SIZE,
)
TEMPLATES.env.trim_blocks = True
TEMPLATES.env.lstrip_blocks = True
_ASSETS: Final = _asset_version()


def _links(request: Request) -> Callable[..., str]:
    """`link(page=2)`: this page's query with some parameters changed (None drops one)."""
    current = dict(request.query_params)

    def link(**changes: Any) -> str:
        params = {**current, **changes}
        kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
        return "?" + urlencode(kept) if kept else "?"

    return link


def _render(
    request: Request, context: WebContext, template: str, values: Mapping[str, Any],
    status: int = 200,
) -> Response:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    shared = {
        "root": root, "csrf": csrf_token(request), "read_only": context.read_only,
        "has_token": context.token is not None, "backend": context.kind,
        "version": _ASSETS, "refresh_ms": REFRESH_MS, "now": context.clock.now(),
        "link": _links(request),
    }
    return TEMPLATES.TemplateResponse(request, template, {**shared, **values},
                                      status_code=status)


def _not_found(request: Request, context: WebContext, what: str) -> Response:
    return _render(request, context, "message.html", {"heading": "Not found", "what": what},
                   status=404)


class _PageRoute(APIRoute):
    """A page route that answers an unreachable store with a page saying so (503)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except BackendUnavailableError as exc:
                return _render(request, get_context(request), "message.html", {
                    "heading": "The store is not answering", "what": str(exc), "retry": True,
                }, status=503)

        return page


router = APIRouter(
    include_in_schema=False, dependencies=[Depends(page_auth)], route_class=_PageRoute
)
Context = Annotated[WebContext, Depends(get_context)]


# -- overview -----------------------------------------------------------------------------------


def _no_worker(detail: Mapping[str, Any]) -> bool:
    """Jobs wait, nobody serves them, and it is not because the queue is paused."""
    return bool(detail["no_worker"]) and not detail["paused"]


@router.get("/")
async def overview(request: Request, context: Context) -> Response:
    """Every queue: counts by state, paused, workers, the last hour's throughput."""
    names = await context.queue_names()
    details = await asyncio.gather(*(api.get_queue(name, context) for name in names))
    totals = {state.value: 0 for state in STATES}
    for detail in details:
        for state, count in detail["counts"].items():
            totals[state] = totals.get(state, 0) + count
    queues = [{**detail, "no_worker": _no_worker(detail),
               "peak": max([b["completed"] + b["failed"] for b in detail["metrics"]] + [1])}
              for detail in details]
    return _render(request, context, "overview.html", {"queues": queues, "totals": totals})


# -- one queue ----------------------------------------------------------------------------------


@dataclass
class JobPage:
    """The job table's page: which jobs, and where the pager can go."""

    state: str
    page: int
    q: str
    jobs: list[dict[str, Any]]
    total: int
    scanned: int | None = None
    truncated: bool = False
    exact: dict[str, Any] | None = None
    """With a search: the job whose id is exactly the search text, in whatever state."""

    @property
    def first(self) -> int:
        """1-based number of the first row shown."""
        return (self.page - 1) * PAGE_SIZE + 1 if self.jobs else 0

    @property
    def last(self) -> int:
        """Number of the last row shown."""
        return (self.page - 1) * PAGE_SIZE + len(self.jobs)

    @property
    def pages(self) -> int:
        """How many pages there are."""
        return max(1, math.ceil(self.total / PAGE_SIZE))


async def _job_page(context: WebContext, name: str, state: str, page: int, q: str) -> JobPage:
    q = q.strip()[:256]
    listed = await api.list_jobs(
        name, context, JobState(state), (page - 1) * PAGE_SIZE, PAGE_SIZE, q or None
    )
    result = JobPage(state, page, q, listed["jobs"], listed["total"], listed.get("scanned"),
                     bool(listed.get("truncated")))
    if q:
        try:
            found = await api.get_job(name, q, context)
        except HTTPException:
            found = None
        if found is not None and found["state"] != state:
            result.exact = found
    return result


def _state(value: str | None) -> str:
    return value if value in {s.value for s in STATES} else JobState.WAITING.value


@router.get("/queues/{name}")
async def queue_page(
    request: Request, name: str, context: Context,
    state: Annotated[str | None, Query()] = None,
    page: Annotated[str | None, Query()] = None,
    q: Annotated[str, Query()] = "",
    range_: Annotated[str, Query(alias="range")] = "1h",
) -> Response:
    """A queue: tabs by state, the job table, actions, throughput, workers, schedules."""
    try:
        detail = await api.get_queue(name, context)
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        return _not_found(request, context, f"There is no queue named “{name}”.")
    chosen = _RANGE_NAMES.get(range_, "1h")
    number = int(page) if page and page.isdigit() and 0 < int(page) < 100_000 else 1
    jobs, workers, metrics = await asyncio.gather(
        _job_page(context, name, _state(state), number, q),
        api.queue_workers(name, context),
        api.queue_metrics(name, context, chosen),
    )
    return _render(request, context, "queue.html", {
        "queue": {**detail, "no_worker": _no_worker(detail)}, "jobs": jobs,
        "workers": workers["workers"], "metrics": metrics, "range": chosen,
        "peak": max([b["completed"] + b["failed"] for b in metrics["buckets"]] + [1]),
    })


# -- one job ------------------------------------------------------------------------------------


@dataclass
class FlowNode:
    """One job of a flow tree as the page draws it."""

    queue: str
    id: str
    state: str
    name: str | None = None
    reason: str | None = None
    current: bool = False
    children: list[FlowNode] = field(default_factory=list)
    more: int = 0
    """Children not drawn (the tree is cut at FLOW_DEPTH or FLOW_NODES_SHOWN)."""


async def _find(context: WebContext, queue: str, job_id: str) -> dict[str, Any] | None:
    try:
        return await api.get_job(queue, job_id, context)
    except HTTPException:
        return None


async def _flow_root(context: WebContext, job: dict[str, Any]) -> dict[str, Any]:
    """The top of the job's flow (the job itself when it has no parent)."""
    top = job
    for _ in range(FLOW_ANCESTORS):
        parent = top.get("parent")
        found = parent and await _find(context, parent["queue"], parent["id"])
        if not found:
            break
        top = found
    return top


async def _flow_tree(
    context: WebContext, job: dict[str, Any], current: tuple[str, str], budget: list[int],
    depth: int = 0,
) -> FlowNode:
    node = FlowNode(job["queue"], job["id"], job["state"], job["name"], job["failed_reason"],
                    current=(job["queue"], job["id"]) == current)
    budget[0] -= 1
    listed = await api.job_children(job["queue"], job["id"], context)
    for child in listed["children"]:
        if depth + 1 >= FLOW_DEPTH or budget[0] <= 0:
            node.more += 1
            continue
        stored = child.get("job")
        if stored is None:
            budget[0] -= 1
            node.children.append(FlowNode(child["queue"], child["id"], child["state"],
                                          reason=child["failed_reason"]))
        else:
            node.children.append(
                await _flow_tree(context, stored, current, budget, depth + 1))
    return node


async def _flow(context: WebContext, job: dict[str, Any]) -> FlowNode | None:
    """The whole flow the job belongs to, or None when it is not part of one."""
    root = await _flow_root(context, job)
    tree = await _flow_tree(context, root, (job["queue"], job["id"]), [FLOW_NODES_SHOWN])
    if tree.children or tree.more or job.get("parent"):
        return tree
    return None


@router.get("/queues/{name}/jobs/{job_id:path}")
async def job_page(request: Request, name: str, job_id: str, context: Context) -> Response:
    """A job: summary, timeline, data, options, progress, logs, outcome, its flow."""
    try:
        await context.queue(name)
    except HTTPException:
        return _not_found(request, context, f"There is no queue named “{name}”.")
    job = await _find(context, name, job_id)
    if job is None:
        return _render(request, context, "job.html", {"job": None, "job_id": job_id,
                                                      "queue_name": name}, status=404)
    flow = await _flow(context, job)
    attempts = job["options"].get("attempts", 1)
    return _render(request, context, "job.html", {
        "job": job, "job_id": job_id, "queue_name": name, "flow": flow,
        "attempts": attempts, "progress_pct": percent(job["progress"]),
    })
