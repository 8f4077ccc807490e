"""The app's HTTP surface: corral's own API mounted at `/queues`, plus one endpoint of its own.

corral's app already serves what the old hand-written endpoints did:

| need                | URL                                                   |
|---------------------|-------------------------------------------------------|
| queue stats         | `GET /queues/api/queues/scheduled-messages`           |
| add a job           | `POST /queues/api/queues/scheduled-messages/jobs`     |
| health              | `GET /queues/health` (503 when the store is down)     |
| Prometheus metrics  | `GET /queues/metrics`                                 |
| dashboard           | `GET /queues/`                                        |

The app adds `POST /schedules/initialize` (runs `setup`: idempotent) and
`POST /leads/availability` (up to 10 leads answered inline, more queued as a job).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import corral
import corral.web
from corral.clock import SYSTEM, Clock
from examples.scheduled_messages.jobs import QUEUE, check_availability, setup
from examples.scheduled_messages.services import build_services
from examples.standins import CallLog


class AvailabilityRequest(BaseModel):
    """The body of `POST /leads/availability`."""

    lead_ids: list[str] = Field(min_length=1, max_length=10_000)


def create_app(
    url: str, log: CallLog, *, clock: Clock = SYSTEM, token: str | None = None
) -> FastAPI:
    """The app over the store at `url`; `token` protects corral's part (`/queues/api`)."""
    services = build_services(log, clock)
    queues = corral.web.create_app(url=url, token=token, clock=clock)
    queue = corral.Queue(QUEUE, url=url, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await queue.close()
        await queues.state.corral.close()  # a mounted app's own lifespan does not run

    app = FastAPI(title="scheduled messages", lifespan=lifespan)
    app.mount("/queues", queues)

    @app.post("/schedules/initialize")
    async def initialize_schedules() -> dict[str, Any]:
        """Configure the queue and upsert its schedules (safe to call on every deploy)."""
        schedules = await setup(url, clock)
        return {"schedules": [schedule.to_json() for schedule in schedules]}

    @app.post("/leads/availability")
    async def availability(body: AvailabilityRequest) -> JSONResponse:
        """Check leads now (≤ 10, 200) or queue the check (202 with the job's id)."""
        result = await check_availability(queue, services, body.lead_ids)
        if isinstance(result, corral.Job):
            return JSONResponse({"job_id": result.id, "queue": QUEUE}, status_code=202)
        return JSONResponse({"on_whatsapp": result})

    return app
