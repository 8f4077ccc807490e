"""The app as a whole: mounted in another app, error mapping, the store's lifetime."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

import corral
from corral.errors import (
    BackendUnavailableError,
    CorralError,
    InvalidOptionError,
    JobLockedError,
    JobNotFoundError,
    LockLostError,
    PayloadTooLargeError,
    SerializationError,
)
from corral.web import WebContext, create_app

from .conftest import TOKEN, serve

PREFIX = "/admin/queues"


@pytest.fixture
async def parent(store_url: str) -> FastAPI:
    parent = FastAPI()
    parent.mount(PREFIX, create_app(store_url, token=TOKEN))

    @parent.get("/")
    async def home() -> dict[str, str]:
        return {"app": "the user's"}

    return parent


async def test_mounted_api_and_health(parent: FastAPI) -> None:
    async with serve(parent) as client:
        home = await client.get("/")
        health = await client.get(f"{PREFIX}/health")
        added = await client.post(f"{PREFIX}/api/queues/q/jobs", json={"name": "m"},
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        outside = await client.get("/api/queues")

    assert home.json() == {"app": "the user's"}
    assert health.status_code == 200
    assert added.status_code == 201
    assert outside.status_code == 404


async def test_mounted_login_honours_the_root_path(parent: FastAPI) -> None:
    async with serve(parent) as client:
        form = await client.get(f"{PREFIX}/login")
        login = await client.post(f"{PREFIX}/login", data={"token": TOKEN})
        read = await client.get(f"{PREFIX}/api/queues")
        logout = await client.post(f"{PREFIX}/logout")

    assert f'action="{PREFIX}/login"' in form.text
    assert login.status_code == 303
    assert login.headers["location"] == f"{PREFIX}/"
    assert f"path={PREFIX}" in login.headers["set-cookie"].lower()
    assert read.status_code == 200
    assert logout.headers["location"] == f"{PREFIX}/login"


async def test_mounted_openapi_names_its_server(parent: FastAPI) -> None:
    async with serve(parent) as client:
        document = (await client.get(f"{PREFIX}/openapi.json")).json()

    assert {"url": PREFIX} in document.get("servers", [])


async def test_mounted_static_files(parent: FastAPI) -> None:
    async with serve(parent) as client:
        missing = await client.get(f"{PREFIX}/static/no-such-file.css")

    assert missing.status_code == 404


async def test_the_lifespan_closes_the_store(store_url: str) -> None:
    app = create_app(store_url)
    context: WebContext = app.state.corral
    async with serve(app) as client:
        await client.get("/api/queues")
        assert context._backend is not None

    assert context._backend is None


def test_create_app_refuses_a_bad_url() -> None:
    with pytest.raises(InvalidOptionError, match="scheme"):
        create_app("mysql://localhost/db")


# -- one place maps errors to status codes -----------------------------------------------------


@pytest.mark.parametrize(("error", "status"), [
    (InvalidOptionError("bad option"), 422),
    (SerializationError("data.x", "not JSON"), 422),
    (PayloadTooLargeError(10, 5), 413),
    (JobNotFoundError("no job 'x'"), 404),
    (JobLockedError("the job is active"), 409),
    (LockLostError("lock lapsed"), 409),
    (BackendUnavailableError("store down"), 503),
    (CorralError("something else"), 400),
])
async def test_corral_errors_map_to_4xx_and_503(
    store_url: str, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    async def fail(self: corral.Queue) -> dict[str, int]:
        raise error

    monkeypatch.setattr(corral.Queue, "counts", fail)
    async with serve(create_app(store_url)) as client:
        await client.post("/api/queues/q/jobs", json={"name": "m"})
        response = await client.get("/api/queues/q/jobs")

    assert response.status_code == status
    assert response.json() == {"detail": str(error)}


async def test_a_bug_is_a_json_500_without_the_traceback(
    store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail(self: corral.Queue) -> dict[str, int]:
        raise ZeroDivisionError("secret internals")

    app = create_app(store_url)
    async with serve(app, transport_raise=False) as client:
        await client.post("/api/queues/q/jobs", json={"name": "m"})
        monkeypatch.setattr(corral.Queue, "counts", fail)
        response = await client.get("/api/queues")

    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json()["detail"]
    assert "ZeroDivisionError" in caplog.text


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing-here")
    method = await client.patch("/api/queues")

    assert (missing.status_code, method.status_code) == (404, 405)
    assert missing.json()["detail"]
    assert method.json()["detail"]
