"""Pure tests of `corral.policy`: backoff delays and the retry-or-fail decision."""

from __future__ import annotations

import random

import pytest

from corral.errors import InvalidOptionError, UnrecoverableError
from corral.options import Backoff
from corral.policy import backoff_delay, decide_after_failure


def delays(backoff: Backoff | None, retries: int, rng: random.Random | None = None) -> list[float]:
    return [backoff_delay(backoff, attempt, rng) for attempt in range(1, retries + 1)]


def test_no_backoff_retries_at_once() -> None:
    assert delays(None, 3) == [0, 0, 0]


def test_fixed() -> None:
    assert delays(Backoff.fixed(10), 4) == [10, 10, 10, 10]


def test_exponential_doubles() -> None:
    assert delays(Backoff.exponential(60), 5) == [60, 120, 240, 480, 960]


def test_exponential_cap() -> None:
    assert delays(Backoff.exponential(60, cap=200), 5) == [60, 120, 200, 200, 200]


def test_exponential_jitter_stays_in_range() -> None:
    rng = random.Random(1234)
    backoff = Backoff.exponential(100, jitter=0.5)

    drawn = [backoff_delay(backoff, attempt, rng) for attempt in (1, 2, 3) for _ in range(200)]

    for index, value in enumerate(drawn):
        full = 100 * 2 ** (index // 200)
        assert full * 0.5 <= value <= full
    # Jitter really spreads the values over its range.
    first = drawn[:200]
    assert min(first) < 60
    assert max(first) > 90


def test_exponential_jitter_applies_after_the_cap() -> None:
    rng = random.Random(7)
    backoff = Backoff.exponential(100, cap=150, jitter=0.2)

    values = [backoff_delay(backoff, 5, rng) for _ in range(100)]

    assert all(120 <= value <= 150 for value in values)


def test_exponential_jitter_is_reproducible_with_a_seed() -> None:
    backoff = Backoff.exponential(10, jitter=1.0)

    assert delays(backoff, 6, random.Random(99)) == delays(backoff, 6, random.Random(99))


def test_custom_last_delay_repeats() -> None:
    assert delays(Backoff.custom([60, 300, 900]), 6) == [60, 300, 900, 900, 900, 900]


def test_custom_with_one_delay() -> None:
    assert delays(Backoff.custom([5]), 3) == [5, 5, 5]


def test_worker_backoff_has_no_delay_of_its_own() -> None:
    assert delays(Backoff.by_worker(), 2) == [0, 0]


# -- decide_after_failure ------------------------------------------------------------------


async def test_retry_while_attempts_remain() -> None:
    decision = await decide_after_failure(ValueError(), 1, 3, Backoff.fixed(30), None)

    assert (decision.retry, decision.delay) == (True, 30)


async def test_fail_when_attempts_are_used_up() -> None:
    decision = await decide_after_failure(ValueError(), 3, 3, Backoff.fixed(30), None)

    assert decision.retry is False


async def test_unrecoverable_fails_at_once() -> None:
    decision = await decide_after_failure(UnrecoverableError("no"), 1, 5, None, None)

    assert decision.retry is False


async def test_retry_delay_follows_the_attempt_number() -> None:
    backoff = Backoff.exponential(10)

    decisions = [await decide_after_failure(ValueError(), n, 10, backoff, None) for n in (1, 2, 3)]

    assert [d.delay for d in decisions] == [10, 20, 40]


async def test_worker_backoff_callable_sync_and_async() -> None:
    def sync_backoff(attempt: int, exc: BaseException) -> float:
        return attempt * 1.5

    async def async_backoff(attempt: int, exc: BaseException) -> float:
        return 100 if isinstance(exc, KeyError) else 1

    by_worker = Backoff.by_worker()

    assert (await decide_after_failure(ValueError(), 2, 5, by_worker, sync_backoff)).delay == 3
    assert (await decide_after_failure(KeyError(), 1, 5, by_worker, async_backoff)).delay == 100


@pytest.mark.parametrize("returned", [-1, "5", None, True])
async def test_worker_backoff_must_return_seconds(returned: object) -> None:
    def bad_backoff(attempt: int, exc: BaseException) -> float:
        return returned  # type: ignore[return-value]

    with pytest.raises(InvalidOptionError):
        await decide_after_failure(ValueError(), 1, 5, Backoff.by_worker(), bad_backoff)
