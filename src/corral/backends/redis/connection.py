"""Connecting to Redis: URL settings, clients, the eviction-policy check, and the one
place where redis-py's connection failures become `BackendUnavailableError`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from corral.backends import redact
from corral.errors import BackendUnavailableError, InvalidOptionError

log = logging.getLogger("corral")

OWN_PARAMS: Final = ("connect_timeout", "allow_eviction")
"""URL parameters corral reads itself; every other one goes to redis-py."""
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
MAX_BLOCK_SECONDS: Final = 30.0
"""The longest a blocking pop waits in one command."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_SCHEMES: Final = {"redis": "redis", "rediss": "rediss", "unix": "unix", "redis+cluster": "redis"}

_DOWN: Final = (
    redis.exceptions.ConnectionError,  # includes refused, reset, auth and loading errors
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica, e.g. during a failover
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterException,  # e.g. no reachable node at start-up
    OSError,  # includes asyncio's TimeoutError
)

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster


@dataclass(frozen=True, slots=True)
class Settings:
    """How to reach one Redis (or Redis Cluster), from the store URL."""

    url: str
    """The URL redis-py receives: corral's scheme suffix and parameters removed."""
    blocking_url: str
    """The same without `socket_timeout`, which must outlast a blocking pop."""
    display: str
    """The URL as given, password hidden, for messages."""
    cluster: bool
    connect_timeout: float
    allow_eviction: bool

    @classmethod
    def parse(cls, url: str, params: Mapping[str, str]) -> Settings:
        """Settings from a store URL and its query parameters (no I/O)."""
        parts = urlsplit(url)
        if parts.scheme == "redis+sentinel":
            raise InvalidOptionError(
                f"{redact(url)!r}: redis+sentinel:// is not supported yet; connect to the "
                "master with redis:// (or rediss://)"
            )
        scheme = _SCHEMES.get(parts.scheme)
        if scheme is None:
            raise InvalidOptionError(f"{redact(url)!r} is not a Redis URL")
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k not in OWN_PARAMS]
        blocking = [(k, v) for k, v in query if k != "socket_timeout"]
        return cls(
            url=parts._replace(scheme=scheme, query=urlencode(query)).geturl(),
            blocking_url=parts._replace(scheme=scheme, query=urlencode(blocking)).geturl(),
            display=redact(url),
            cluster=parts.scheme == "redis+cluster",
            connect_timeout=_seconds(params.get("connect_timeout")),
            allow_eviction=_flag(params.get("allow_eviction"), "allow_eviction"),
        )

    def unavailable(self, exc: BaseException) -> BackendUnavailableError:
        """The error a caller sees when Redis cannot be reached."""
        reason = str(exc) or type(exc).__name__  # asyncio's timeouts have no message
        return BackendUnavailableError(f"Redis store {self.display}: {reason}")

    @contextlib.contextmanager
    def translate(self) -> Iterator[None]:
        """Turn redis-py's connection failures inside the block into BackendUnavailableError."""
        try:
            yield
        except _DOWN as exc:
            raise self.unavailable(exc) from exc

    def _kwargs(self, socket_timeout: float) -> dict[str, Any]:
        return {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": socket_timeout,
            "decode_responses": False,
        }

    def async_client(self, *, blocking: bool = False) -> AsyncClient:
        """A new client with its own connection pool (no I/O until used).

        Commands are not retried: a script may have run before its connection failed, and
        the caller (a worker's loop, a user) decides what to do again.
        """
        timeout = self.connect_timeout + (MAX_BLOCK_SECONDS if blocking else 0.0)
        kwargs = self._kwargs(timeout)
        url = self.blocking_url if blocking else self.url
        if self.cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(url, **kwargs)
        return redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **kwargs)

    def sync_client(self) -> SyncClient:
        """A new blocking client (for the lock-renewal thread)."""
        kwargs = self._kwargs(self.connect_timeout)
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(self.url, **kwargs)
        return redis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), **kwargs)


def _seconds(text: str | None) -> float:
    if text is None:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise InvalidOptionError(f"connect_timeout={text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise InvalidOptionError(f"connect_timeout={text!r} must be within (0, 3600] seconds")
    return value


def _flag(text: str | None, name: str) -> bool:
    if text is None:
        return False
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise InvalidOptionError(f"{name}={text!r}: use 1 or 0")


def _policies(reply: Any) -> set[str]:
    """Every maxmemory-policy in a CONFIG GET reply (one per node on a cluster)."""
    found: set[str] = set()
    if isinstance(reply, Mapping):
        for key, value in reply.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name == "maxmemory-policy":
                found.add(value.decode() if isinstance(value, bytes) else str(value))
            else:
                found |= _policies(value)
    elif isinstance(reply, list | tuple):
        for item in reply:
            found |= _policies(item)
    return found


async def check_eviction_policy(client: AsyncClient, settings: Settings) -> None:
    """Refuse a Redis that may evict keys (jobs would vanish), unless allowed; warn when
    the policy cannot be read."""
    if settings.allow_eviction:
        return
    try:
        reply = await client.config_get("maxmemory-policy")
    except redis.exceptions.ResponseError as exc:
        log.warning(
            "cannot read maxmemory-policy of %s (%s): make sure it is noeviction, or jobs "
            "may be lost when memory runs out", settings.display, exc,
        )
        return
    evicting = sorted(_policies(reply) - {"noeviction"})
    if evicting:
        raise InvalidOptionError(
            f"Redis at {settings.display} runs with maxmemory-policy {', '.join(evicting)}: "
            "it may evict corral's keys and lose jobs. Set `maxmemory-policy noeviction`, "
            "or add ?allow_eviction=1 to the URL to accept the risk"
        )
