"""The platform's own web app, with corral's dashboard mounted at `/admin/queues`.

    uvicorn examples.agent_platform.web:app

The store comes from `CORRAL_URL` (default `sqlite:///agent.db`), the dashboard's token from
`CORRAL_TOKEN` (without one, the dashboard and its API are open to whoever reaches the app:
set it anywhere but on your own machine).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import corral.web
from corral.clock import Clock
from examples.agent_platform.jobs import WORKSPACES, Producer

__all__ = ["DEFAULT_URL", "app", "create_web_app"]

DEFAULT_URL = "sqlite:///agent.db"


class DocumentIn(BaseModel):
    """A document to add to a workspace's knowledge base."""

    workspace: str
    document_id: str
    title: str
    text: str


class EventIn(BaseModel):
    """Something that happened in a workspace, for its webhook."""

    workspace: str
    type: str
    data: dict[str, Any] = {}
    id: str | None = None


class Accepted(BaseModel):
    """The job that will do the work."""

    job_id: str


def create_web_app(
    url: str | None = None, token: str | None = None, clock: Clock | None = None
) -> FastAPI:
    """The platform's API over the store at `url` (else CORRAL_URL, else DEFAULT_URL)."""
    url = url or os.environ.get("CORRAL_URL", DEFAULT_URL)
    dashboard = corral.web.create_app(url=url, token=token, clock=clock)
    producer = Producer(url, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await producer.close()
        await dashboard.state.corral.close()  # a mounted app's own lifespan does not run

    app = FastAPI(title="Agent platform", lifespan=lifespan)

    def workspace_of(name: str) -> str:
        if name not in WORKSPACES:
            raise HTTPException(404, f"no workspace {name!r}")
        return name

    @app.post("/documents", status_code=202)
    async def add_document(document: DocumentIn) -> Accepted:
        """Queue a document for indexing."""
        job = await producer.submit_document(
            workspace_of(document.workspace), document.document_id, document.title,
            document.text,
        )
        return Accepted(job_id=job.id)

    @app.post("/events", status_code=202)
    async def publish_event(event: EventIn) -> Accepted:
        """Queue an event for the workspace's webhook."""
        job = await producer.publish_event(
            workspace_of(event.workspace), event.type, event.data, event.id
        )
        return Accepted(job_id=job.id)

    app.mount("/admin/queues", dashboard)
    return app


app = create_web_app(token=os.environ.get("CORRAL_TOKEN"))
