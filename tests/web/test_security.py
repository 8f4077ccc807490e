"""Who may use the app: bearer token, login cookie and CSRF, read-only, tokens in URLs, CORS."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from corral.testing import VirtualClock
from corral.web import create_app
from corral.web.security import COOKIE_NAME, CSRF_HEADER

from .conftest import TOKEN, ClientFactory, serve

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def login(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/login", data={"token": token})


async def csrf_of(client: httpx.AsyncClient) -> str:
    """The CSRF token of the client's session, computed as the page's template gets it."""
    from corral.web.security import _sign

    session_id = client.cookies[COOKIE_NAME].partition(".")[0]
    return _sign(TOKEN, "csrf:" + session_id)


# -- the token ----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN}, {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {TOKEN}x"}, {"Cookie": f"{COOKIE_NAME}=forged.abc"},
])
async def test_api_needs_the_token(make_client: ClientFactory, headers: dict[str, str]) -> None:
    async with make_client(token=TOKEN) as client:
        for method, path in (("GET", "/api/queues"), ("GET", "/api/queues/q"),
                             ("POST", "/api/queues/q/jobs"), ("DELETE", "/api/queues/q/jobs/x")):
            response = await client.request(method, path, headers=headers, json={"name": "m"})
            assert response.status_code == 401, (method, path)
            assert response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"


async def test_bearer_token_opens_the_api(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        added = await client.post("/api/queues/q/jobs", json={"name": "m"}, headers=BEARER)
        listed = await client.get("/api/queues", headers=BEARER)

    assert added.status_code == 201
    assert listed.status_code == 200


async def test_token_from_the_environment_is_not_read_by_create_app(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CORRAL_TOKEN is the CLI's business; create_app takes what it is given.
    monkeypatch.setenv("CORRAL_TOKEN", TOKEN)
    async with make_client() as client:
        assert (await client.get("/api/queues")).status_code == 200


@pytest.mark.parametrize("query", ["token", "access_token"])
async def test_a_token_in_the_url_is_refused(make_client: ClientFactory, query: str) -> None:
    async with make_client(token=TOKEN) as client:
        alone = await client.get("/api/queues", params={query: TOKEN})
        with_header = await client.get("/api/queues", params={query: TOKEN}, headers=BEARER)
        metrics = await client.get("/metrics", params={query: TOKEN})

    for response in (alone, with_header, metrics):
        assert response.status_code == 401
        assert "URL" in response.json()["detail"]


async def test_health_and_openapi_stay_open(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_metrics_follow_the_token(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        closed = await client.get("/metrics")
        opened = await client.get("/metrics", headers=BEARER)
    async with make_client(token=TOKEN, public_metrics=True) as client:
        public = await client.get("/metrics")

    assert closed.status_code == 401
    assert opened.status_code == public.status_code == 200


def test_an_empty_token_is_refused(store_url: str) -> None:
    from corral.errors import InvalidOptionError
    from corral.web import create_app

    with pytest.raises(InvalidOptionError, match="empty"):
        create_app(store_url, token="  ")


# -- the login cookie ---------------------------------------------------------------------------


async def test_login_form(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        response = await client.get("/login")

    assert response.status_code == 200
    assert 'name="token"' in response.text
    assert 'action="/login"' in response.text


async def test_login_sets_a_strict_httponly_cookie(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        response = await login(client)

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(COOKIE_NAME)
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/" in cookie
    assert TOKEN.lower() not in cookie


async def test_cookie_is_secure_over_https(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN, client={"base_url": "https://testserver"}) as client:
        response = await login(client)

    assert "secure" in response.headers["set-cookie"].lower()


async def test_wrong_token_shows_the_form_again(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        response = await login(client, "wrong")
        missing = await client.post("/login", data={})

    assert response.status_code == missing.status_code == 401
    assert "set-cookie" not in response.headers
    assert 'role="alert"' in response.text
    assert 'name="token"' in response.text


async def test_cookie_opens_reads(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        response = await client.get("/api/queues")

    assert response.status_code == 200


async def test_changes_with_the_cookie_need_the_csrf_token(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        csrf = await csrf_of(client)
        missing = await client.post("/api/queues/q/jobs", json={"name": "m"})
        wrong = await client.post("/api/queues/q/jobs", json={"name": "m"},
                                  headers={CSRF_HEADER: "0" * 64})
        right = await client.post("/api/queues/q/jobs", json={"name": "m"},
                                  headers={CSRF_HEADER: csrf})

    assert missing.status_code == wrong.status_code == 403
    assert CSRF_HEADER in missing.json()["detail"]
    assert right.status_code == 201


async def test_csrf_token_of_another_session_is_refused(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        other = await csrf_of(client)
        await login(client)  # a new session
        response = await client.post("/api/queues/q/jobs", json={"name": "m"},
                                     headers={CSRF_HEADER: other})

    assert response.status_code == 403


async def test_the_page_gets_the_csrf_token(store_url: str) -> None:
    from starlette.requests import Request

    from corral.web.security import csrf_token

    app = create_app(store_url, token=TOKEN)
    async with serve(app) as client:
        await login(client)
        cookie = client.cookies[COOKIE_NAME]
        expected = await csrf_of(client)
    scope = {"type": "http", "method": "GET", "path": "/", "app": app, "query_string": b"",
             "headers": [(b"cookie", f"{COOKIE_NAME}={cookie}".encode())]}

    assert csrf_token(Request(scope)) == expected


async def test_changing_the_token_logs_everyone_out(
    make_client: ClientFactory, store_url: str
) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        cookie = client.cookies[COOKIE_NAME]
    async with make_client(token="another-token") as client:
        client.cookies.set(COOKIE_NAME, cookie)
        response = await client.get("/api/queues")

    assert response.status_code == 401


async def test_logout_clears_the_cookie(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        response = await client.post("/logout")

    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert 'max-age=0' in response.headers["set-cookie"].lower()


async def test_login_without_a_token_goes_to_the_dashboard(make_client: ClientFactory) -> None:
    async with make_client() as client:
        form = await client.get("/login")
        posted = await login(client)

    assert form.status_code == posted.status_code == 303
    assert "set-cookie" not in posted.headers


async def test_pages_redirect_to_login(store_url: str) -> None:
    from fastapi import Depends

    from corral.web.security import page_auth

    app = create_app(store_url, token=TOKEN)

    @app.get("/probe", dependencies=[Depends(page_auth)])
    async def probe() -> dict[str, bool]:
        return {"ok": True}

    async with serve(app) as client:
        anonymous = await client.get("/probe")
        await login(client)
        logged_in = await client.get("/probe")

    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login"
    assert logged_in.status_code == 200


# -- read-only, origins, headers ----------------------------------------------------------------


async def test_read_only_refuses_changes(make_client: ClientFactory) -> None:
    async with make_client(read_only=True) as client:
        reads = await client.get("/api/queues")
        changes = [
            await client.post("/api/queues/q/jobs", json={"name": "m"}),
            await client.post("/api/queues/q/pause"),
            await client.delete("/api/queues/q/jobs/x"),
            await client.put("/api/queues/q/schedules/s", json={"every": 60}),
        ]

    assert reads.status_code == 200
    for response in changes:
        assert response.status_code == 403
        assert "read-only" in response.json()["detail"]


async def test_read_only_with_a_token_still_authenticates_first(
    make_client: ClientFactory,
) -> None:
    async with make_client(token=TOKEN, read_only=True) as client:
        anonymous = await client.post("/api/queues/q/pause")
        bearer = await client.post("/api/queues/q/pause", headers=BEARER)

    assert anonymous.status_code == 401
    assert bearer.status_code == 403


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
])
async def test_cross_origin_changes_are_refused(
    make_client: ClientFactory, headers: dict[str, str]
) -> None:
    async with make_client() as client:
        change = await client.post("/api/queues/q/jobs", json={"name": "m"}, headers=headers)
        read = await client.get("/api/queues", headers=headers)
        same = await client.post("/api/queues/q/jobs", json={"name": "m"},
                                 headers={"Origin": "http://testserver"})

    assert change.status_code == 403
    assert read.status_code == 200
    assert same.status_code == 201


async def test_no_cors_headers_for_foreign_origins(make_client: ClientFactory) -> None:
    origin = {"Origin": "https://evil.example"}
    async with make_client(token=TOKEN) as client:
        read = await client.get("/api/queues", headers={**origin, **BEARER})
        preflight = await client.options("/api/queues", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        })

    for response in (read, preflight):
        assert not any(name.lower().startswith("access-control-") for name in response.headers)


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


async def test_a_session_expires_after_a_week(
    make_client: ClientFactory, clock: VirtualClock
) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        await clock.advance(timedelta(days=6, hours=23))
        fresh = await client.get("/api/queues")
        await clock.advance(timedelta(hours=2))
        expired = await client.get("/api/queues")

    assert fresh.status_code == 200
    assert expired.status_code == 401


async def test_a_tampered_session_is_refused(make_client: ClientFactory) -> None:
    async with make_client(token=TOKEN) as client:
        await login(client)
        session_id, _, signature = client.cookies[COOKIE_NAME].partition(".")
        client.cookies.set(COOKIE_NAME, f"{session_id}0.{signature}")
        response = await client.get("/api/queues")

    assert response.status_code == 401
