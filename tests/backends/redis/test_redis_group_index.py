"""The group index on the Redis store against a model of the claim order.

Random adds, claims, completions, releases, stalls, removals, cleans, drains and
promotions; after every step
the index (`gwaiting`, `groups`) must describe exactly the waiting jobs, and every claim
must take the jobs the rule names: lowest priority first, then the group served longest
ago (ties by name, the ungrouped group "" first), then FIFO with LIFO jobs first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import cast

import pytest
import redis

from corral.backends.base import Complete, Limits, Release
from corral.backends.redis import RedisBackend, records
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, ids, new_job

UNGROUPED = ""
STEP = 2**32


def key(part: str) -> str:
    return f"corral:{{q}}:{part}"


def stored_name(group: str) -> bytes:
    """A group's name as the index stores it (UTF-8; the ungrouped group is empty)."""
    return group.encode()


@dataclass
class Model:
    """What the store should hold: waiting jobs by id, and each group's served turn."""

    waiting: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    """id -> (group, priority, position): position counts up, LIFO jobs' down from 0."""
    delayed: dict[str, tuple[str, int, bool]] = field(default_factory=dict)
    active: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    turn: int = 0
    adds: int = 0

    def position(self, lifo: bool) -> int:
        self.adds += 1
        return -self.adds if lifo else self.adds

    def head(self, group: str) -> tuple[int, int, str]:
        return min((p, pos, i) for i, (g, p, pos) in self.waiting.items() if g == group)

    def groups(self) -> set[str]:
        return {g for g, _, _ in self.waiting.values()}

    def take(self, job_id: str) -> None:
        self.active[job_id] = self.waiting.pop(job_id)

    def left(self, group: str) -> None:
        if group not in self.groups():
            self.served.pop(group, None)

    def claim(self, count: int) -> list[str]:
        taken: list[str] = []
        if len(self.groups()) == 1:
            (group,) = self.groups()
            for _, _, job_id in sorted(self.head_all(group))[:count]:
                self.take(job_id)
                taken.append(job_id)
            self.left(group)
            return taken
        while len(taken) < count and self.waiting:
            group = min(
                self.groups(),
                key=lambda g: (self.head(g)[0], self.served.get(g, 0), stored_name(g)),
            )
            _, _, job_id = self.head(group)
            self.take(job_id)
            taken.append(job_id)
            self.turn += 1
            self.served[group] = self.turn
            self.left(group)
        return taken

    def head_all(self, group: str) -> list[tuple[int, int, str]]:
        return [(p, pos, i) for i, (g, p, pos) in self.waiting.items() if g == group]


def check_index(raw: redis.Redis) -> None:
    """`gwaiting` holds one entry per waiting job, `groups` each group by its head; a
    queue that never had a grouped job keeps neither."""
    members = cast(list[bytes], raw.zrange(key("waiting"), 0, -1))
    waiting = [member.decode() for member in members]
    if raw.hget(key("meta"), "grouped") != b"1":
        assert not raw.exists(key("gwaiting"), key("groups"))
        for job_id in waiting:
            assert "group" not in records.decode(cast(bytes, raw.hget(key("jobs"), job_id)))
        return
    expected_entries: set[bytes] = set()
    heads: dict[bytes, int] = {}
    for job_id in waiting:
        rec = records.decode(cast(bytes, raw.hget(key("jobs"), job_id)))
        group = stored_name(rec.get("group") or UNGROUPED)
        position = f"{rec['priority'] + 2**21:06x}{rec['seq'] + 2**40:011x}"
        expected_entries.add(group + f"\0{position}\0{job_id}".encode())
        heads[group] = min(heads.get(group, rec["priority"]), rec["priority"])
    assert set(raw.zrange(key("gwaiting"), 0, -1)) == expected_entries
    groups = dict(cast(list[tuple[bytes, float]], raw.zrange(key("groups"), 0, -1,
                                                             withscores=True)))
    assert set(groups) == set(heads)
    for group, score in groups.items():
        assert score // STEP == heads[group], group


@pytest.mark.parametrize("seed", range(8))
async def test_claims_follow_the_model(  # noqa: C901 - a walk through every operation
    backend: RedisBackend, raw: redis.Redis, seed: int
) -> None:
    rng = random.Random(seed)
    # Half the walks add grouped jobs only from step 120 on: the index starts mid-way,
    # with jobs waiting, delayed and active.
    groups_from = 0 if seed % 2 else 120
    model = Model()
    tokens: dict[str, str] = {}
    now = T0
    for step in range(250):
        op = rng.choices(
            ["add", "claim", "complete", "release", "remove", "promote", "stall", "clean",
             "drain"],
            weights=[10, 6, 4, 2, 2, 2, 1, 1, 0.2],
        )[0]
        if op == "add":
            job_id = f"j{step}"
            group = rng.choice([None, "a", "b", "c", "é"]) if step >= groups_from else None
            priority = rng.choice([0, 0, 0, 1, -1])
            lifo = rng.random() < 0.2
            delayed = rng.random() < 0.15
            await add(backend, new_job(job_id, group=group, priority=priority, lifo=lifo,
                                       delay_ms=10**9 if delayed else None), now=now)
            if delayed:
                model.delayed[job_id] = (group or UNGROUPED, priority, lifo)
            else:
                model.waiting[job_id] = (group or UNGROUPED, priority, model.position(lifo))
        elif op == "claim":
            count = rng.choice([1, 1, 2, 3, 7])
            claimed = await claim(backend, count, now=now)
            assert ids(claimed) == model.claim(count), (seed, step)
            tokens.update((c.record.id, c.token) for c in claimed)
        elif op in ("complete", "release") and model.active:
            job_id = rng.choice(sorted(model.active))
            outcome = (Complete(job_id, tokens[job_id], "null") if op == "complete"
                       else Release(job_id, tokens[job_id]))
            result = await backend.settle("q", [outcome], 0, LOCK_MS, "w1", now)
            assert result.refused == []
            entry = model.active.pop(job_id)
            if op == "release":
                model.waiting[job_id] = entry  # keeps its position
        elif op == "remove" and model.waiting:
            job_id = rng.choice(sorted(model.waiting))
            assert await backend.remove("q", job_id)
            group = model.waiting.pop(job_id)[0]
            model.left(group)
        elif op == "promote" and model.delayed:
            job_id = rng.choice(sorted(model.delayed))
            assert await backend.promote("q", job_id, now)
            group, priority, lifo = model.delayed.pop(job_id)
            model.waiting[job_id] = (group, priority, model.position(lifo))
        elif op == "stall" and model.active:
            now += LOCK_MS + 1
            recovered = await backend.recover_stalled("q", 100, now)
            assert sorted(recovered.recovered) == sorted(model.active)
            model.waiting.update(model.active)  # back at their positions
            model.active.clear()
        elif op == "clean":
            removed = await backend.clean("q", "waiting", 0, rng.choice([1, 3]), now)
            for job_id in removed:
                model.left(model.waiting.pop(job_id)[0])
        elif op == "drain":
            assert await backend.drain("q", delayed=False) == len(model.waiting)
            model.waiting.clear()
            model.served.clear()
        check_index(raw)


async def test_a_queue_indexed_before_the_flag_existed_keeps_its_index(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a1", group="a"), new_job("u1"), new_job("a2", group="a"))
    raw.hdel(key("meta"), "grouped")  # as an older version left it, its index in place
    await add(backend, new_job("u2"), new_job("b1", group="b"))
    assert raw.hget(key("meta"), "grouped") == b"1"
    check_index(raw)
    assert ids(await claim(backend, 5)) == ["u1", "a1", "b1", "u2", "a2"]


async def test_an_empty_queue_without_the_flag_starts_without_an_index(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    raw.hset(key("meta"), "n", 0)  # a queue that exists, with nothing waiting
    await add(backend, new_job("u1"), new_job("u2"))
    assert raw.hget(key("meta"), "grouped") == b"0"
    check_index(raw)
    assert ids(await claim(backend, 5)) == ["u1", "u2"]


@pytest.mark.parametrize("seed", range(3))
async def test_active_counts_per_group_stay_exact(
    backend: RedisBackend, raw: redis.Redis, seed: int
) -> None:
    rng = random.Random(seed)
    await backend.set_config("q", "{}", Limits(group_concurrency=2))
    held: dict[str, str] = {}
    now = T0
    for step in range(200):
        op = rng.choice(["add", "add", "claim", "complete", "release", "stall"])
        if op == "add":
            group = rng.choice([None, "a", "b"])
            await add(backend, new_job(f"j{step}", group=group), now=now)
        elif op == "claim":
            claimed = await claim(backend, rng.choice([1, 3, 8]), now=now)
            held.update((c.record.id, c.token) for c in claimed)
        elif op in ("complete", "release") and held:
            job_id = rng.choice(sorted(held))
            token = held.pop(job_id)
            outcome = (Complete(job_id, token, "null") if op == "complete"
                       else Release(job_id, token))
            assert (await backend.settle("q", [outcome], 0, LOCK_MS, "w1", now)).refused == []
        elif op == "stall" and held:
            now += LOCK_MS + 1
            await backend.recover_stalled("q", 100, now)
            held.clear()
        active: dict[bytes, int] = {}
        for active_id in cast(list[bytes], raw.zrange(key("active"), 0, -1)):
            rec = records.decode(cast(bytes, raw.hget(key("jobs"), active_id)))
            active_group = stored_name(rec.get("group") or UNGROUPED)
            active[active_group] = active.get(active_group, 0) + 1
        assert {g: int(n) for g, n in raw.hgetall(key("gactive")).items()} == active
        assert all(count <= 2 for count in active.values())
