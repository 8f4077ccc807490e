"""Dedupe in `add`, the same on every store: debounce (replace), with and without a ttl,
and how it meets active jobs and the job id rule."""

from __future__ import annotations

from corral.backends.base import Backend
from corral.job_state import JobState
from tests.backends.protocol.support import SECOND, T0, add, add_one, claim, deduped, ids, new_job


async def test_replace_debounces_a_waiting_job(backend: Backend) -> None:
    await add_one(backend, deduped("a", data='{"v": 1}'))
    await add(backend, new_job("x"))
    assert await add_one(backend, deduped("b", replace=True, data='{"v": 2}')) == (
        "a", False, '{"v": 2}',
    )
    job = await backend.get_job("q", "a")
    assert job is not None
    assert (job.state, job.data, job.run_at) == (JobState.WAITING, '{"v": 2}', None)
    assert ids(await claim(backend, 5)) == ["a", "x"]  # kept its place


async def test_replace_with_ttl_restarts_the_ttl(backend: Backend) -> None:
    await add_one(backend, deduped("a", ttl_ms=SECOND, replace=True, delay_ms=SECOND))
    again = deduped("b", ttl_ms=SECOND, replace=True, delay_ms=SECOND, data='"late"')
    assert await add_one(backend, again, T0 + 900) == ("a", False, '"late"')
    third = deduped("c", ttl_ms=SECOND, replace=True, delay_ms=SECOND, data='"last"')
    assert await add_one(backend, third, T0 + 1500) == ("a", False, '"last"')
    assert (await backend.counts("q"))["delayed"] == 1


async def test_an_active_survivor_makes_replace_a_plain_duplicate(backend: Backend) -> None:
    await add_one(backend, deduped("a", data='{"v": 1}'))
    await claim(backend, 1)
    assert await add_one(backend, deduped("b", replace=True, data='{"v": 2}')) == (
        "a", False, '{"v": 1}',
    )
    job = await backend.get_job("q", "a")
    assert job is not None
    assert (job.state, job.data) == (JobState.ACTIVE, '{"v": 1}')


async def test_the_job_id_rule_comes_before_dedupe(backend: Backend) -> None:
    await add_one(backend, deduped("a", data='"first"'))
    await add(backend, new_job("x", data='"x"'))
    # An id still stored returns that job unchanged, whatever its key says.
    assert await add_one(backend, deduped("x", replace=True, data='"new"')) == (
        "x", False, '"x"',
    )
    assert await add_one(backend, deduped("a", key="k2", data='"new"')) == (
        "a", False, '"first"',
    )
    # ... and records no key: k2 is still free.
    assert (await add_one(backend, deduped("y", key="k2")))[:2] == ("y", True)
