"""Pure tests of `corral.clock` conversions and `corral.testing.VirtualClock`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from corral.clock import SYSTEM, Clock, to_datetime, to_ms
from corral.errors import InvalidOptionError
from corral.testing import FastClock, VirtualClock

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)


def test_ms_conversions_round_trip() -> None:
    moment = datetime(2026, 2, 24, 12, 0, 0, 123000, tzinfo=UTC)

    assert to_datetime(to_ms(moment)) == moment
    assert to_datetime(None) is None
    assert to_ms(datetime(2026, 2, 24, 14, 0, tzinfo=timezone(timedelta(hours=2)))) == to_ms(START)


def test_to_datetime_is_aware_utc() -> None:
    moment = to_datetime(0)

    assert moment == datetime(1970, 1, 1, tzinfo=UTC)
    assert moment is not None
    assert moment.utcoffset() == timedelta(0)


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SYSTEM, Clock)
    assert isinstance(VirtualClock(START), Clock)
    assert SYSTEM.is_virtual is False
    assert VirtualClock(START).is_virtual is True


def test_virtual_clock_starts_where_told() -> None:
    clock = VirtualClock(START)

    assert clock.now() == START
    assert clock.now_ms() == to_ms(START)


def test_virtual_clock_refuses_naive_start() -> None:
    with pytest.raises(InvalidOptionError):
        VirtualClock(datetime(2026, 1, 1))


async def test_advance_moves_time_and_wakes_due_sleepers() -> None:
    clock = VirtualClock(START)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("10s", 10)), asyncio.create_task(sleeper("1h", 3600))]
    await asyncio.sleep(0)

    await clock.advance(timedelta(seconds=10))
    assert woke == ["10s"]
    assert clock.now() == START + timedelta(seconds=10)

    await clock.advance(3590)
    assert woke == ["10s", "1h"]
    await asyncio.gather(*tasks)


async def test_set_jumps_and_refuses_going_back() -> None:
    clock = VirtualClock(START)

    await clock.set(START + timedelta(days=2))

    assert clock.now() == START + timedelta(days=2)
    with pytest.raises(InvalidOptionError):
        await clock.set(START)
    with pytest.raises(InvalidOptionError):
        await clock.advance(-1)


async def test_sleep_of_zero_returns_at_once() -> None:
    clock = VirtualClock(START)

    await asyncio.wait_for(clock.sleep(0), timeout=1)

    assert clock.now() == START


async def test_a_fast_clock_runs_speed_times_real_time() -> None:
    clock = FastClock(3600, start=START)  # an hour per real second
    assert isinstance(clock, Clock)
    assert clock.is_virtual
    assert clock.real_seconds(3600) == 1

    await clock.sleep(180)  # three minutes of it: 50 ms real
    elapsed = clock.now() - START

    assert timedelta(minutes=3) <= elapsed < timedelta(minutes=30)


@pytest.mark.parametrize("speed", [0, -1, True, "fast"])
def test_a_fast_clock_refuses_a_bad_speed(speed: object) -> None:
    with pytest.raises(InvalidOptionError, match="speed"):
        FastClock(speed)  # type: ignore[arg-type]


def test_a_fast_clock_needs_an_aware_start() -> None:
    with pytest.raises(InvalidOptionError, match="aware"):
        FastClock(10, start=datetime(2026, 1, 1))
