"""Choosing a store from a URL."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from corral.backends.base import Backend
from corral.errors import InvalidOptionError

DEFAULT_URL = "sqlite:///corral.db"
SQLITE_SCHEMES = frozenset({"sqlite"})
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+sentinel", "redis+cluster", "unix"})


def resolve_url(url: str | None) -> str:
    """The store URL: `url`, else `CORRAL_URL`, else the SQLite file `corral.db` here."""
    if url is None:
        url = os.environ.get("CORRAL_URL")
        if url is not None and not url.strip():
            raise InvalidOptionError("CORRAL_URL is set but empty: unset it or give a store URL")
        url = url or DEFAULT_URL
    if not isinstance(url, str) or not url.strip():
        raise InvalidOptionError(f"store URL must be a non-empty string, not {url!r}")
    scheme = urlsplit(url).scheme
    if scheme not in SQLITE_SCHEMES | REDIS_SCHEMES:
        raise InvalidOptionError(
            f"unsupported store URL scheme {scheme!r} in {redact(url)!r}: "
            "use sqlite:///file.db or redis://host:6379/0"
        )
    if scheme in SQLITE_SCHEMES:
        sqlite_path(url)
    return url


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///relative.db` or `sqlite:////absolute.db` URL."""
    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidOptionError(f"{url!r}: a SQLite URL has no host (sqlite:///file.db)")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise InvalidOptionError(f"{url!r}: a SQLite URL needs a file path (sqlite:///file.db)")
    return path


def url_params(url: str) -> dict[str, str]:
    """Query parameters of a store URL (the last value of each wins)."""
    return {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}


def redact(url: str) -> str:
    """The URL with any password hidden, for logs and messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def open_backend(url: str) -> Backend:
    """A backend for a resolved URL (no I/O happens until it is used)."""
    scheme = urlsplit(url).scheme
    if scheme in SQLITE_SCHEMES:
        from corral.backends.sqlite import SqliteBackend

        return SqliteBackend(sqlite_path(url), url_params(url))
    if scheme in REDIS_SCHEMES:
        from corral.backends.redis import RedisBackend

        return RedisBackend(url, url_params(url))
    raise InvalidOptionError(f"unsupported store URL scheme {scheme!r} in {redact(url)!r}")
