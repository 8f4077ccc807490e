"""Who may use the web app: bearer tokens, the dashboard's session cookie, CSRF, read-only.

With a token set, an `/api` request needs `Authorization: Bearer <token>` or the session
cookie that the login form sets. The cookie needs no server-side store: it is a random
session id with its issue time, and an HMAC of both keyed by the token, so it is valid for
`SESSION_SECONDS` while the server keeps the same token; changing the token logs every
browser out. The CSRF token
of a session is another HMAC of its id; a change made with the cookie must carry it in the
`X-CSRF-Token` header (the page reads it from `<meta name="csrf-token">`). Every comparison
is constant-time. A token in the URL (`?token=`) is refused, never honoured: URLs end up in
logs, histories and Referer headers.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import TemplateNotFound
from markupsafe import escape

from corral.web.context import WebContext

__all__ = [
    "COOKIE_NAME",
    "CSRF_HEADER",
    "LoginRequired",
    "csrf_token",
    "page_auth",
    "require_api",
    "require_metrics",
    "router",
]

COOKIE_NAME: Final = "corral_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_SECONDS: Final = 7 * 86400
"""How long a login lasts."""
_TEMPLATES: Final = Path(__file__).parent / "templates"

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """A page was asked for without a valid session: the app redirects to the login form."""


def _context(request: Request) -> WebContext:
    context: WebContext = request.app.state.corral
    return context


def root_path(request: Request) -> str:
    """The path the app is mounted at ("" at the top), for every URL the app builds."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _sign(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def _new_session(token: str, now_ms: int) -> str:
    # The id carries its issue time, so the signature also vouches for the session's age.
    session_id = f"{secrets.token_urlsafe(24)}-{now_ms}"
    return f"{session_id}.{_sign(token, 'session:' + session_id)}"


def _session_id(request: Request, token: str) -> str | None:
    """The id of the request's session cookie when its signature holds and it has not
    expired, else None."""
    cookie = request.cookies.get(COOKIE_NAME, "")
    session_id, _, signature = cookie.partition(".")
    if not session_id or not signature:
        return None
    expected = _sign(token, "session:" + session_id)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    issued = session_id.rpartition("-")[2]
    age_ms = _context(request).clock.now_ms() - int(issued) if issued.isdigit() else -1
    return session_id if 0 <= age_ms < SESSION_SECONDS * 1000 else None


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _refuse_token_in_url(request: Request) -> None:
    if "token" in request.query_params or "access_token" in request.query_params:
        raise HTTPException(
            401, "tokens are never accepted in a URL: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _refuse_cross_origin(request: Request) -> None:
    """Refuse a change sent by a page of another origin (belt and braces next to CSRF)."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin request refused")


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session ("" without a token or a session)."""
    token = _context(request).token
    if token is None:
        return ""
    session_id = _session_id(request, token)
    return "" if session_id is None else _sign(token, "csrf:" + session_id)


def _check_csrf(request: Request, token: str, session_id: str) -> None:
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER, "")
    expected = _sign(token, "csrf:" + session_id)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")


def _authenticate(request: Request) -> None:
    """Bearer token or session cookie (with CSRF on changes), when the app has a token."""
    _refuse_token_in_url(request)
    _refuse_cross_origin(request)
    token = _context(request).token
    if token is None or _bearer_ok(request, token):
        return
    session_id = _session_id(request, token)
    if session_id is None:
        raise HTTPException(
            401, "authentication required: 'Authorization: Bearer <token>' or log in",
            headers={"WWW-Authenticate": "Bearer"},
        )
    _check_csrf(request, token, session_id)


def require_api(request: Request) -> None:
    """Dependency of every `/api` route: authenticated, and no changes when read-only."""
    _authenticate(request)
    if _context(request).read_only and request.method not in SAFE_METHODS:
        raise HTTPException(403, "the dashboard is read-only")


def require_metrics(request: Request) -> None:
    """Dependency of `/metrics`: the token rules of `/api`, unless metrics are public."""
    _refuse_token_in_url(request)
    if not _context(request).public_metrics:
        _authenticate(request)


def page_auth(request: Request) -> None:
    """Dependency of the HTML pages: without a valid session, LoginRequired (a redirect)."""
    _refuse_token_in_url(request)
    token = _context(request).token
    if token is not None and _session_id(request, token) is None:
        raise LoginRequired()


# -- the login form ---------------------------------------------------------------------------

_FALLBACK_FORM: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>corral: log in</title></head>
<body><form method="post" action="{action}">
{error}<label>Token <input type="password" name="token" autocomplete="current-password"
autofocus required></label> <button type="submit">Log in</button></form></body></html>
"""


@functools.cache
def _templates() -> Jinja2Templates:
    return Jinja2Templates(directory=_TEMPLATES)


def _login_page(request: Request, error: str | None, status: int) -> Response:
    root = root_path(request)
    try:
        return _templates().TemplateResponse(
            request, "login.html", {"error": error, "root_path": root}, status_code=status
        )
    except TemplateNotFound:
        message = f'<p role="alert">{escape(error)}</p>' if error else ""
        html = _FALLBACK_FORM.format(action=escape(f"{root}/login"), error=message)
        return HTMLResponse(html, status_code=status)


def _cookie_path(request: Request) -> str:
    return root_path(request) or "/"


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The login form (straight to the dashboard when no token is needed)."""
    if _context(request).token is None:
        return RedirectResponse(f"{root_path(request)}/", status_code=303)
    return _login_page(request, None, 200)


@router.post("/login")
async def login(request: Request, token: str = Form("")) -> Response:
    """Check the token and set the session cookie."""
    _refuse_cross_origin(request)
    expected = _context(request).token
    if expected is None:
        return RedirectResponse(f"{root_path(request)}/", status_code=303)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return _login_page(request, "That token is not right.", 401)
    response = RedirectResponse(f"{root_path(request)}/", status_code=303)
    response.set_cookie(
        COOKIE_NAME, _new_session(expected, _context(request).clock.now_ms()),
        max_age=SESSION_SECONDS, httponly=True, samesite="strict",
        path=_cookie_path(request), secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Clear the session cookie."""
    _refuse_cross_origin(request)
    response = RedirectResponse(f"{root_path(request)}/login", status_code=303)
    response.delete_cookie(
        COOKIE_NAME, path=_cookie_path(request), httponly=True, samesite="strict"
    )
    return response
