"""Pure decisions, made once for every store: backoff delays and retry-or-fail."""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from corral.errors import InvalidOptionError, UnrecoverableError
from corral.options import Backoff

BackoffFunction = Callable[[int, BaseException], float | Awaitable[float]]
"""A worker-side backoff: `(attempt, exc) -> seconds`, sync or async."""


def backoff_delay(backoff: Backoff | None, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry)."""
    if backoff is None or backoff.kind == "worker":
        return 0.0
    if backoff.kind == "fixed":
        return backoff.delay
    if backoff.kind == "custom":
        delay: float = backoff.delays[min(attempt, len(backoff.delays)) - 1]
        return delay
    delay = backoff.delay * 2.0 ** (attempt - 1)
    if backoff.cap is not None:
        delay = min(delay, backoff.cap)
    if backoff.jitter:
        delay -= (rng or random).uniform(0.0, backoff.jitter * delay)
    return delay


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do with a failed attempt: retry after `delay` seconds, or fail for good."""

    retry: bool
    delay: float = 0.0


async def decide_after_failure(
    exc: BaseException,
    attempts_made: int,
    max_attempts: int,
    backoff: Backoff | None,
    worker_backoff: BackoffFunction | None,
) -> RetryDecision:
    """Retry while attempts remain and the error allows it; `attempts_made` counts this one."""
    if isinstance(exc, UnrecoverableError) or attempts_made >= max_attempts:
        return RetryDecision(retry=False)
    if backoff is not None and backoff.kind == "worker" and worker_backoff is not None:
        delay: Any = worker_backoff(attempts_made, exc)
        if inspect.isawaitable(delay):
            delay = await delay
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise InvalidOptionError(f"worker backoff returned {delay!r}, not seconds >= 0")
        return RetryDecision(retry=True, delay=float(delay))
    return RetryDecision(retry=True, delay=backoff_delay(backoff, attempts_made))
