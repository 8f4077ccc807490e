"""The public names of `corral` and its exception tree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import corral
from corral.backends import resolve_url


def test_every_public_name_exists() -> None:
    for name in corral.__all__:
        assert hasattr(corral, name), name


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (corral.InvalidOptionError, (corral.CorralError, ValueError)),
        (corral.SerializationError, (corral.InvalidOptionError,)),
        (corral.PayloadTooLargeError, (corral.CorralError,)),
        (corral.JobLockedError, (corral.CorralError,)),
        (corral.LockLostError, (corral.CorralError,)),
        (corral.JobNotFoundError, (corral.CorralError, KeyError)),
        (corral.JobFailedError, (corral.CorralError,)),
        (corral.BackendUnavailableError, (corral.CorralError,)),
    ],
)
def test_exception_tree(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert issubclass(error, base)
    assert error.__doc__


def test_processor_signals_are_not_corral_errors() -> None:
    assert not issubclass(corral.UnrecoverableError, corral.CorralError)
    assert not issubclass(corral.RateLimited, corral.CorralError)
    assert corral.RateLimited(2).seconds == 2.0


def test_job_state_is_a_str_enum() -> None:
    plain: str = corral.JobState.WAITING
    assert plain == "waiting"
    assert corral.JobState("waiting-children") is corral.JobState.WAITING_CHILDREN
    assert {state.value for state in corral.JobState} == {
        "waiting", "delayed", "active", "completed", "failed", "waiting-children",
    }


def test_construction_does_no_io(tmp_path: object) -> None:
    # A path whose directory does not exist: using it would fail, building on it must not.
    url = "sqlite:////nonexistent-corral-dir/sub/corral.db"

    queue = corral.Queue("q", url=url)
    worker = corral.Worker("q", lambda job: None, url=url)

    assert queue.url == url
    assert worker is not None


def test_url_defaults_to_sqlite_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_URL", raising=False)

    assert resolve_url(None) == "sqlite:///corral.db"


def test_virtual_clock_is_exported_for_users() -> None:
    from corral.testing import VirtualClock

    clock = VirtualClock(datetime(2026, 2, 24, tzinfo=UTC))
    assert clock.now() + timedelta(0) == datetime(2026, 2, 24, tzinfo=UTC)
