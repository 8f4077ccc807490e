"""The Redis store: workers on many machines sharing one Redis (or Valkey, or a Cluster)."""

from __future__ import annotations

from corral.backends.redis.backend import RedisBackend, RedisLockKeeper

__all__ = ["RedisBackend", "RedisLockKeeper"]
