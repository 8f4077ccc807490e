"""Queue-wide limits, fair groups and dedupe on the SQLite store.

Concurrency and rate limits across claimers, the sliding window and the hold it
reports, round-robin between groups, per-group limits, the idle look agreeing with the
claim, dedupe (simple, throttle, debounce), and the upgrade of a version-2 file.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from corral.backends.base import (
    Limits,
    SettleResult,
)
from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from corral.backends.sqlite.settle import _look, _settle
from corral.job_state import JobState
from tests.backends.protocol.support import (
    LOCK_MS,
    SECOND,
    T0,
    add,
    add_jobs,
    add_one,
    claim,
    claim_one_by_one,
    complete,
    deduped,
    grouped,
    ids,
    limit,
    look,
    new_job,
)


@contextmanager
def database(db_path: str) -> Iterator[sqlite3.Connection]:
    """A plain connection to the file, to look at the rows behind the transitions."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(db_path: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with database(db_path) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
async def second(db_path: str) -> AsyncIterator[SqliteBackend]:
    """Another backend on the same file: a worker in another process, as far as the
    store can tell."""
    store = SqliteBackend(db_path, {})
    yield store
    await store.close()


# -- settings -----------------------------------------------------------------------------


async def test_set_config_stores_the_limits_beside_the_config(
    backend: SqliteBackend, db_path: str
) -> None:
    assert await limit(backend, concurrency=3, rate_limit=5, rate_per_ms=SECOND) == 1
    assert await limit(backend, group_concurrency=2) == 2
    stored = rows(
        db_path,
        "SELECT rate_limit, rate_per_ms, concurrency, group_rate_limit, group_rate_per_ms,"
        " group_concurrency, config_version FROM queues WHERE name = 'q'",
    )
    assert stored == [(None, None, None, None, None, 2, 2)]
    assert (await backend.get_config("q")).config == "[('group_concurrency', 2)]"


# -- rate limit ---------------------------------------------------------------------------


async def test_rate_limit_records_starts_and_holds_until_the_window_lets_one_go(
    backend: SqliteBackend, second: SqliteBackend, db_path: str
) -> None:
    await limit(backend, rate_limit=3, rate_per_ms=SECOND)
    await add(backend, *grouped(None, 10))
    assert ids(await claim(backend, 2, now=T0)) == ["U1", "U2"]
    assert ids(await claim(second, 5, now=T0 + 300)) == ["U3"]
    assert rows(db_path, "SELECT grp, at FROM job_starts ORDER BY at") == [
        ("", T0), ("", T0), ("", T0 + 300),
    ]
    for claimer, at in ((backend, T0 + 400), (second, T0 + 999)):
        held = await look(claimer, 5, at)
        assert (held.claimed, held.hold_until_ms) == ([], T0 + SECOND)
    counts = await backend.counts("q")
    assert (counts["waiting"], counts["active"]) == (7, 3)
    # The window slides: both starts at T0 leave it at T0 + 1 s, the third 300 ms later.
    assert ids(await claim(second, 5, now=T0 + SECOND)) == ["U4", "U5"]
    held = await look(backend, 5, T0 + SECOND + 1)
    assert held.hold_until_ms == T0 + SECOND + 300
    assert ids(await claim(backend, 5, now=T0 + SECOND + 300)) == ["U6"]
    # Starts older than the window are forgotten as new ones are recorded.
    assert ids(await claim(backend, 5, now=T0 + 5 * SECOND)) == ["U7", "U8", "U9"]
    assert rows(db_path, "SELECT count(*), min(at) FROM job_starts") == [(3, T0 + 5 * SECOND)]


async def test_a_rate_hold_is_reported_only_while_jobs_wait(
    backend: SqliteBackend, db_path: str
) -> None:
    await limit(backend, rate_limit=1, rate_per_ms=SECOND)
    await add(backend, new_job("a"))
    (claimed,) = await claim(backend, 1)
    await complete(backend, "a", claimed.token)
    assert (await look(backend, 1, T0 + 10)).hold_until_ms is None
    await add(backend, new_job("b"), now=T0 + 20)
    result = await backend.settle("q", [], 1, LOCK_MS, "w1", T0 + 30)
    assert (result.claimed, result.hold_until_ms) == ([], T0 + SECOND)
    # A lowered limit: the hold lasts until enough starts left the window.
    await limit(backend, rate_limit=3, rate_per_ms=SECOND)
    assert ids(await claim(backend, 1, now=T0 + 100)) == ["b"]
    await add(backend, new_job("c"), new_job("d"), now=T0 + 200)
    assert ids(await claim(backend, 1, now=T0 + 200)) == ["c"]
    await limit(backend, rate_limit=1, rate_per_ms=SECOND)
    assert (await look(backend, 1, T0 + 300)).hold_until_ms == T0 + 200 + SECOND
    # Lifting every rate limit forgets the starts.
    await limit(backend, concurrency=10)
    assert rows(db_path, "SELECT count(*) FROM job_starts") == [(0,)]
    assert ids(await claim(backend, 1, now=T0 + 300)) == ["d"]


# -- groups -------------------------------------------------------------------------------


async def test_groups_take_turns_within_a_priority(backend: SqliteBackend) -> None:
    await add(backend, *grouped("A", 3), *grouped("B", 2), *grouped(None, 2))
    await add(backend, new_job("A-lifo", group="A", lifo=True), now=T0 + 1)
    expected = ["U1", "A-lifo", "B1", "U2", "A1", "B2", "A2", "A3"]
    assert await claim_one_by_one(backend, 9) == expected


async def test_a_batch_claim_takes_the_same_turns(backend: SqliteBackend, db_path: str) -> None:
    await add(backend, *grouped("A", 3), *grouped("B", 2), *grouped(None, 2))
    assert ids(await claim(backend, 4)) == ["U1", "A1", "B1", "U2"]
    # Turns carry over to the next call.
    assert rows(db_path, "SELECT grp, served FROM job_groups ORDER BY grp") == [
        ("", 4), ("A", 2), ("B", 3),
    ]
    assert rows(db_path, "SELECT group_turn FROM queues") == [(4,)]
    assert ids(await claim(backend, 10)) == ["A2", "B2", "A3"]


async def test_a_group_keeps_its_turn_while_it_has_no_waiting_job(
    backend: SqliteBackend, db_path: str
) -> None:
    # X adds its next job as soon as its last one starts: it still takes its turn.
    await add(backend, new_job("X0", group="X"), *grouped("Y", 4), *grouped("Z", 4))
    order: list[str] = []
    for n in range(1, 10):
        (claimed,) = await claim(backend, 1)
        order.append(claimed.record.id)
        if claimed.record.group == "X":
            await add(backend, new_job(f"X{n}", group="X"))
    assert order == ["X0", "Y1", "Z1", "X1", "Y2", "Z2", "X4", "Y3", "Z3"]
    # Rows of groups served before every waiting group are dropped as claims go on.
    await backend.obliterate("q", force=True)
    await add(backend, *grouped("A", 3), *grouped("B", 3), new_job("C1", group="C"))
    assert ids(await claim(backend, 3)) == ["A1", "B1", "C1"]
    assert ids(await claim(backend, 2)) == ["A2", "B2"]
    assert rows(db_path, "SELECT grp, served FROM job_groups ORDER BY grp") == [
        ("A", 4), ("B", 5), ("C", 3),
    ]
    assert ids(await claim(backend, 1)) == ["A3"]
    assert rows(db_path, "SELECT grp, served FROM job_groups ORDER BY grp") == [
        ("A", 6), ("B", 5),
    ]


async def test_group_concurrency(backend: SqliteBackend, second: SqliteBackend) -> None:
    await limit(backend, group_concurrency=2)
    await add(backend, *grouped("A", 5), *grouped("B", 3), *grouped(None, 1))
    first = await claim(backend, 3)
    assert ids(first) == ["U1", "A1", "B1"]
    assert ids(await claim(second, 10)) == ["A2", "B2"]
    assert await claim(backend, 10) == []
    idle = await look(second, 10, T0)
    assert (idle.claimed, idle.hold_until_ms) == ([], None)
    await complete(backend, "A1", first[1].token)
    assert ids(await claim(second, 10)) == ["A3"]
    # One group alone (the fast path) obeys it too.
    await backend.obliterate("q", force=True)
    await limit(backend, group_concurrency=2)
    await add(backend, *grouped("A", 5))
    assert ids(await claim(backend, 10)) == ["A1", "A2"]
    assert await claim(second, 10) == []


async def test_group_rate_limit(backend: SqliteBackend, db_path: str) -> None:
    await limit(backend, group_rate_limit=2, group_rate_per_ms=SECOND)
    await add(backend, *grouped("A", 5), *grouped("B", 3))
    assert ids(await claim(backend, 10, now=T0)) == ["A1", "B1", "A2", "B2"]
    assert ids(await claim(backend, 10, now=T0 + 100)) == []
    held = await look(backend, 10, T0 + 100)
    assert held.hold_until_ms == T0 + SECOND
    assert rows(db_path, "SELECT grp, count(*) FROM job_starts GROUP BY grp") == [
        ("A", 2), ("B", 2),
    ]
    assert ids(await claim(backend, 10, now=T0 + SECOND)) == ["A3", "B3", "A4"]
    # Only A waits now, at its rate: the hold names when A's window frees.
    assert await claim(backend, 10, now=T0 + SECOND + 5) == []
    assert (await look(backend, 10, T0 + SECOND + 5)).hold_until_ms == T0 + 2 * SECOND


# -- the fast path ------------------------------------------------------------------------


async def test_ungrouped_jobs_take_the_bulk_claim(
    backend: SqliteBackend, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.backends.sqlite import limits

    def no_round_robin(*args: object) -> None:
        raise AssertionError("one group alone needs no turns")

    monkeypatch.setattr(limits, "_claim_round_robin", no_round_robin)
    await add(backend, new_job("p1", priority=1), new_job("a"), new_job("b"))
    await add(backend, new_job("lifo", lifo=True), now=T0 + 1)
    assert ids(await claim(backend, 10)) == ["lifo", "a", "b", "p1"]
    await add(backend, *grouped("A", 3))  # one named group alone: the same
    assert ids(await claim(backend, 2)) == ["A1", "A2"]
    assert rows(db_path, "SELECT count(*) FROM job_groups") == [(0,)]
    assert rows(db_path, "SELECT group_turn FROM queues") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM job_starts") == [(0,)]  # no rate limit


# -- the idle look agrees with the claim --------------------------------------------------


def looks(db_path: str, now: int, count: int = 5) -> SettleResult | None:
    with database(db_path) as conn:
        conn.execute("BEGIN")
        try:
            looked = _look(conn, "q", count, now)
        finally:
            conn.execute("ROLLBACK")
    return None if looked is None else looked[0]


async def test_a_worker_at_a_groups_concurrency_does_not_spin(
    backend: SqliteBackend, db_path: str
) -> None:
    await limit(backend, group_concurrency=1)
    await add(backend, *grouped("A", 3))
    (a1,) = await claim(backend, 5)
    # Nothing claimable: the look answers without the write lock, and says so.
    looked = looks(db_path, T0)
    assert looked is not None
    assert (looked.claimed, looked.hold_until_ms) == ([], None)
    # Another group's job is claimable: the look must not hide it.
    await add(backend, new_job("B1", group="B"))
    assert looks(db_path, T0) is None
    assert ids(await claim(backend, 5)) == ["B1"]
    assert looks(db_path, T0) is not None
    await complete(backend, "A1", a1.token)
    assert looks(db_path, T0) is None


async def test_the_look_and_the_claim_agree_on_random_states(db_path: str) -> None:
    generator = random.Random(7)
    backend = SqliteBackend(db_path, {})
    try:
        for round_ in range(60):
            await backend.obliterate("q", force=True)
            await limit(
                backend,
                concurrency=generator.choice([None, 2, 4]),
                rate_limit=generator.choice([None, 3]),
                rate_per_ms=SECOND,
                group_concurrency=generator.choice([None, 1, 2]),
                group_rate_limit=generator.choice([None, 1, 2]),
                group_rate_per_ms=SECOND,
            )
            now = T0 + round_ * 10 * SECOND
            jobs = [
                new_job(
                    f"j{n}",
                    group=generator.choice([None, "A", "B", "C"]),
                    priority=generator.choice([0, 0, 1]),
                )
                for n in range(generator.randint(0, 8))
            ]
            await add(backend, *jobs, now=now)
            for step in range(6):
                at = now + step * 150
                looked = looks(db_path, at, count=2)
                with database(db_path) as conn:
                    conn.execute("BEGIN IMMEDIATE")
                    result, _ = _settle(conn, "q", [], 2, LOCK_MS, "w", at)
                    conn.execute("COMMIT")
                assert (looked is None) == bool(result.claimed), (round_, step)
                if looked is not None:
                    assert looked.hold_until_ms == result.hold_until_ms, (round_, step)
    finally:
        await backend.close()


# -- dedupe -------------------------------------------------------------------------------


async def test_dedupe_ignores_adds_while_the_job_is_pending(backend: SqliteBackend) -> None:
    assert (await add_one(backend, deduped("a")))[:2] == ("a", True)
    assert (await add_one(backend, deduped("b")))[:2] == ("a", False)
    assert (await add_one(backend, deduped("other", key="k2")))[:2] == ("other", True)
    (claimed,) = await claim(backend, 1)
    assert (await add_one(backend, deduped("c")))[:2] == ("a", False)  # active
    await complete(backend, "a", claimed.token)
    assert (await add_one(backend, deduped("d")))[:2] == ("d", True)  # free once completed
    assert (await add_one(backend, deduped("e")))[:2] == ("d", False)
    assert await backend.get_job("q", "b") is None
    # Delayed counts as pending too; a removed job frees the key.
    await backend.obliterate("q", force=True)
    assert (await add_one(backend, deduped("f", delay_ms=SECOND)))[:2] == ("f", True)
    assert (await add_one(backend, deduped("g")))[:2] == ("f", False)
    assert await backend.remove("q", "f")
    assert (await add_one(backend, deduped("h")))[:2] == ("h", True)


async def test_dedupe_within_one_bulk_add(backend: SqliteBackend) -> None:
    result = await add_jobs(backend, [deduped("a"), deduped("b"), new_job("c")], now=T0)
    assert [(r.id, created) for r, created in result.records] == [
        ("a", True), ("a", False), ("c", True),
    ]


async def test_dedupe_with_ttl_throttles(backend: SqliteBackend) -> None:
    assert (await add_one(backend, deduped("a", ttl_ms=SECOND)))[:2] == ("a", True)
    (claimed,) = await claim(backend, 1)
    await complete(backend, "a", claimed.token)
    # Finished, but the ttl still runs: a duplicate.
    assert (await add_one(backend, deduped("b", ttl_ms=SECOND), T0 + 999))[:2] == ("a", False)
    assert (await add_one(backend, deduped("c", ttl_ms=SECOND), T0 + SECOND))[:2] == ("c", True)
    # Once the ttl ran out the add goes ahead even while the last job still waits.
    assert (await add_one(backend, deduped("d", ttl_ms=SECOND), T0 + 2 * SECOND))[:2] == (
        "d", True,
    )
    # A survivor that retention removed frees the key.
    assert await backend.remove("q", "d")
    assert (await add_one(backend, deduped("e", ttl_ms=SECOND), T0 + 2 * SECOND))[:2] == (
        "e", True,
    )


async def test_replace_restarts_the_delay(backend: SqliteBackend) -> None:
    await add_one(backend, deduped("a", delay_ms=SECOND, data='{"v": 1}'))
    replacement = deduped("b", replace=True, delay_ms=SECOND, data='{"v": 2}')
    assert await add_one(backend, replacement, T0 + 600) == ("a", False, '{"v": 2}')
    job = await backend.get_job("q", "a")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.DELAYED, T0 + 1600)
    assert await claim(backend, 5, now=T0 + SECOND) == []
    (claimed,) = await claim(backend, 5, now=T0 + 1600)
    assert (claimed.record.id, claimed.record.data) == ("a", '{"v": 2}')
    # Without a delay the replaced job waits at once; a waiting one given a delay waits on.
    await backend.obliterate("q", force=True)
    await add_one(backend, deduped("c", delay_ms=SECOND))
    assert (await add_one(backend, deduped("d", replace=True), T0 + 10))[:2] == ("c", False)
    assert ids(await claim(backend, 5, now=T0 + 10)) == ["c"]
    await add_one(backend, deduped("e", key="k2"))
    assert (await add_one(backend, deduped("f", key="k2", replace=True, delay_ms=500)))[:2] == (
        "e", False,
    )
    job = await backend.get_job("q", "e")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.DELAYED, T0 + 500)


async def test_obliterate_forgets_starts_groups_and_dedupe_keys(
    backend: SqliteBackend, db_path: str
) -> None:
    await limit(backend, rate_limit=10, rate_per_ms=SECOND)
    await add(backend, *grouped("A", 2), *grouped("B", 2), deduped("d"))
    await claim(backend, 2)
    assert rows(db_path, "SELECT count(*) FROM job_starts") == [(2,)]
    assert rows(db_path, "SELECT count(*) FROM job_groups") != [(0,)]
    await backend.obliterate("q", force=True)
    for table in ("job_starts", "job_groups", "dedupe", "queues"):
        assert rows(db_path, f"SELECT count(*) FROM {table}") == [(0,)], table
    assert (await add_one(backend, deduped("e")))[:2] == ("e", True)


# -- an older file ------------------------------------------------------------------------


async def test_a_version_2_file_is_upgraded_in_place(db_path: str) -> None:
    assert SCHEMA_VERSION >= 3
    with database(db_path) as conn:
        for migration in MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO queues (name, config, config_version, next_seq)"
            " VALUES ('q', '{\"a\": 1}', 4, 3)"
        )
        for seq, (job_id, group) in enumerate([("old-A", "A"), ("old-B", "B")], start=1):
            conn.execute(
                "INSERT INTO jobs (queue, id, name, data, options, state, seq, created_at, grp)"
                " VALUES ('q', ?, 'task', '{}', '{}', 'waiting', ?, ?, ?)",
                (job_id, seq, T0, group),
            )
    backend = SqliteBackend(db_path, {})
    try:
        config = await backend.get_config("q")
        assert (config.config, config.version) == ('{"a": 1}', 4)
        await add(backend, new_job("new-A", group="A"), deduped("d"), deduped("e"))
        assert ids(await claim(backend, 5)) == ["d", "old-A", "old-B", "new-A"]
        assert await backend.set_config("q", "{}", Limits(concurrency=4)) == 5
        await add(backend, new_job("more"))
        assert await claim(backend, 5) == []
    finally:
        await backend.close()
    with database(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert "jobs_waiting" in indexes
        columns = [row[2] for row in conn.execute("PRAGMA index_info('jobs_waiting')")]
        assert columns == ["queue", "grp", "priority", "seq"]


# -- waiting jobs, grouped or not, for the admin transitions -----------------------------


async def test_listing_counting_cleaning_and_draining_see_grouped_jobs_too(
    backend: SqliteBackend,
) -> None:
    await add(backend, new_job("U1"), new_job("A1", group="A"), now=T0)
    await add(backend, new_job("U0", priority=-1), new_job("B0", group="B", lifo=True), now=T0 + 1)
    await add(backend, new_job("U2"), new_job("C1", group="C", delay_ms=SECOND), now=T0 + 2)
    listed = await backend.list_jobs("q", "waiting", 0, 10)
    assert [job.id for job in listed] == ["U0", "B0", "U1", "A1", "U2"]
    assert [job.id for job in await backend.list_jobs("q", "waiting", 1, 2)] == ["B0", "U1"]
    assert [job.id for job in await backend.list_jobs("q", "waiting", 4, 5)] == ["U2"]
    counts = await backend.counts("q")
    assert (counts["waiting"], counts["delayed"]) == (5, 1)
    assert sorted(await backend.clean("q", "waiting", 0, 10, T0)) == ["A1", "U1"]
    assert len(await backend.clean("q", "waiting", 0, 1, T0 + 1)) == 1  # the limit holds
    assert await backend.drain("q", delayed=False) == 2
    assert await backend.drain("q", delayed=True) == 1
    assert (await backend.counts("q"))["waiting"] == 0
