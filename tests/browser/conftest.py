"""Fixtures of the browser tests: a live dashboard server and headless Chromium.

The server runs uvicorn in a background thread with its own event loop, on a loopback
socket with a free port, over a SQLite file in a temporary directory; a corral Worker runs
in the same loop, so a job retried from the page really runs again. Chromium is Debian's
`/usr/bin/chromium`, driven by Playwright (`.ci/run` installs both); without them the
tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import corral
from corral.web.app import create_app

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-test-token"
QUEUE = "mail"
FLAKY_ID = "flaky-1"
LONG_ID = "order:" + "7" * 180
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
START_TIMEOUT = 10.0


def _require_browser() -> None:
    """Skip the test, saying why, when Playwright or Chromium is missing (fail in CI)."""
    if importlib.util.find_spec("playwright") is None:
        reason = "playwright is not installed (scripts/test installs it with the dev extra)"
    elif not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (scripts/test installs Debian's chromium with apt-get)"
    else:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


def _worker(url: str, failed_once: set[str]) -> corral.Worker:
    async def process(job: corral.Job) -> dict[str, Any]:
        """Succeeds, except that a job with `flaky` fails its very first attempt (ever)."""
        await job.log(f"sending to {job.data.get('to')}")
        if job.data.get("flaky") and job.id not in failed_once:
            failed_once.add(job.id)
            raise RuntimeError("SMTP server said 421: try again later")
        await job.update_progress(100)
        return {"delivered": True}

    return corral.Worker(QUEUE, process, url=url, concurrency=4)


async def _seed(url: str, failed_once: set[str]) -> None:
    """A queue with completed jobs, one failed for good, one delayed, one with a long id."""
    async with corral.Queue(QUEUE, url=url) as queue:
        for number in range(12):
            await queue.add("send", {"to": f"user{number}@example.com"}, tags=[f"lead:{number}"])
        await queue.add("send", {"to": "flaky@example.com", "flaky": True}, job_id=FLAKY_ID)
        await queue.add("report", {"note": "x" * 600}, job_id=LONG_ID)
        await queue.schedule("nightly", cron="0 2 * * *", data={"kind": "digest"})
        worker = _worker(url, failed_once)
        await worker.run(burst=True)
        await worker.close()
        await queue.add("send", {"to": "later@example.com"}, job_id="later-1", delay=3600)


class LiveServer:
    """uvicorn serving `app` from a thread of its own, with an optional Worker in its loop."""

    def __init__(self, app: FastAPI, worker: corral.Worker | None = None) -> None:
        self.app = app
        self.worker = worker
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: Any = None  # uvicorn.Server, made in the server's thread
        self.started = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        task = asyncio.create_task(self.worker.run()) if self.worker else None
        self.started.set()
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            if self.worker is not None and task is not None:
                await self.worker.close(timeout=5)
                await task

    def __enter__(self) -> LiveServer:
        # Listening before uvicorn runs: early connections wait in the backlog, not fail.
        self.sock.listen(128)
        self.thread.start()
        assert self.started.wait(START_TIMEOUT), "the server thread did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)
        self.sock.close()


@dataclass(frozen=True)
class Store:
    """The SQLite file the servers share."""

    url: str
    failed_once: set[str] = field(default_factory=set)
    """Ids of the flaky jobs that have had their one failure (shared by every worker)."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A seeded SQLite store (a real file)."""
    _require_browser()
    root = tmp_path_factory.mktemp("dashboard")
    store = Store(f"sqlite:///{root}/corral.db")
    asyncio.run(_seed(store.url, store.failed_once))
    return store


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[LiveServer]:
    """The dashboard with a token, and a worker for the queue."""
    app = create_app(store.url, token=TOKEN)
    with LiveServer(app, _worker(store.url, store.failed_once)) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's build)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh laptop-sized page (1366×768) that fails the test on a script error."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"script errors on the page: {errors}"


def log_in(page: Page, base: str) -> None:
    """Open the dashboard, get sent to the login form, and log in with the token."""
    page.goto(base + "/")
    assert page.url == base + "/login"
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
