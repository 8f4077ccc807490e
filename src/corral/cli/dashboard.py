"""`corral dashboard`: serve the web dashboard and HTTP API with uvicorn."""

from __future__ import annotations

import ipaddress
from typing import Final

import click

from corral.backends import resolve_url

from .common import UserError, announce, url_option

LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (names other than localhost
    are not resolved: they count as reachable from elsewhere)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _browser_url(host: str, port: int) -> str:
    shown = host.strip("[]")
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (without a token: loopback only).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--token", envvar="CORRAL_TOKEN", show_envvar=True, metavar="TOKEN",
              help="Require this token: 'Authorization: Bearer TOKEN' or the login form.")
@click.option("--read-only", is_flag=True, help="Refuse every change (403).")
@click.option("--insecure", is_flag=True,
              help="Allow a non-loopback --host without a token (anyone who reaches it can "
                   "change your queues).")
@click.option("--public-metrics", is_flag=True, help="Serve /metrics without the token.")
@url_option
def dashboard(
    host: str, port: int, token: str | None, read_only: bool, insecure: bool,
    public_metrics: bool, url: str | None,
) -> None:
    """Serve the web dashboard, the HTTP API (/api, /openapi.json), /health and /metrics."""
    if token is not None and not token.strip():
        raise UserError("the token (--token or CORRAL_TOKEN) is empty: give one or unset it")
    loopback = is_loopback(host)
    if token is None and not loopback and not insecure:
        raise UserError(
            f"refusing to serve the dashboard on {host!r} without a token: anyone who can "
            "reach it could change your queues. Give --token (or CORRAL_TOKEN), bind "
            "--host 127.0.0.1, or pass --insecure if something else guards it."
        )
    resolved = resolve_url(url)
    announce(resolved)

    import uvicorn

    from corral.web import create_app

    app = create_app(resolved, token, read_only, public_metrics=public_metrics)
    if token is None and loopback:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        # A tokenless server trusts whoever reaches it; refusing foreign Host headers keeps
        # a web page from reaching it through DNS rebinding.
        app.add_middleware(
            TrustedHostMiddleware,
            allowed_hosts=["localhost", "127.0.0.1", "[::1]", "::1", host.strip("[]")],
        )
    notes = [note for note, on in (("token required", token is not None),
                                   ("read-only", read_only),
                                   ("public /metrics", public_metrics)) if on]
    suffix = f" ({', '.join(notes)})" if notes else ""
    click.echo(f"corral dashboard: {_browser_url(host, port)}{suffix}", err=True)
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="info", server_header=False)
