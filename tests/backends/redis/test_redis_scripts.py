"""The Lua files: one per transition, each with a header that names its keys and arguments."""

from __future__ import annotations

import re

import pytest
import redis

from corral.backends.redis import scripts
from corral.backends.redis.keys import PARTS, queue_keys

TRANSITIONS = {
    "add", "settle", "recover_stalled", "extend_locks", "remove", "remove_tagged", "promote",
    "retry_job", "retry_failed", "update_progress", "update_data", "add_log", "set_paused",
    "clean", "drain", "obliterate", "set_config", "get_job", "list_jobs", "counts",
    "upsert_schedule", "remove_schedule", "fire_schedule",
    "register_worker", "unregister_worker", "list_workers", "add_flow", "dependencies",
}
_Q_ENTRY = re.compile(r"(?:\['([\w-]+)'\]|(\w+)) = KEYS\[(\d+)\]")


def test_every_transition_has_its_script() -> None:
    assert set(scripts.names()) == TRANSITIONS


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_the_header_names_every_key_and_argument(name: str) -> None:
    src = scripts.source(name)
    assert src.keys, "a script touches at least one key"
    assert set(src.keys) <= set(PARTS)
    assert len(set(src.keys)) == len(src.keys)
    assert "Output:" in src.text.split("]]", 1)[0]
    used_args = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", src.text.split("]]", 1)[1])}
    assert used_args <= set(range(1, len(src.argv) + 1))
    assert not re.search(r"^--- @include", src.text, re.MULTILINE)  # helpers are pasted in


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_the_key_table_matches_the_header(name: str) -> None:
    src = scripts.source(name)
    body = src.text.split("]]", 1)[1]
    table = {int(n): part or word for part, word, n in _Q_ENTRY.findall(body)}
    if table:  # scripts that use helpers name their keys once, in a table Q
        assert [table[i] for i in sorted(table)] == list(src.keys)
    assert "corral" not in body, "no key names built in Lua"


def test_key_names_follow_the_layout() -> None:
    assert queue_keys("mail")["waiting"] == "corral:{mail}:waiting"
    assert queue_keys("mail", "flow")["jobs"] == "corral:{flow}:mail:jobs"
    assert scripts.source("counts").key_names(queue_keys("q")) == [
        f"corral:{{q}}:{part}"
        for part in ("waiting", "delayed", "active", "completed", "failed", "waiting-children")
    ]


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_every_script_compiles(name: str, raw: redis.Redis) -> None:
    sha = raw.script_load(scripts.source(name).text)
    assert raw.script_exists(sha) == [True]


def _lua_list(script: str, name: str) -> list[str]:
    text = scripts._read(f"{script}.lua")
    match = re.search(rf"local {name} = \{{(.*?)\}}", text, re.DOTALL)
    assert match, f"{script}.lua defines {name}"
    return re.findall(r"'([\w-]+)'", match.group(1))


def test_the_flow_scripts_name_real_parts() -> None:
    # add_flow takes its header's keys once per queue; _flows builds a parent's from them.
    assert _lua_list("add_flow", "BLOCK") == list(scripts.source("add_flow").keys)
    assert set(_lua_list("_flows", "FLOW_PARTS")) <= set(PARTS)


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_scripts_that_delete_jobs_know_about_flows(name: str) -> None:
    src = scripts.source(name)
    body = src.text.split("]]", 1)[1]
    if re.search(r"\b(delete_job|delete_many|apply_retention)\(", scripts._read(f"{name}.lua")):
        assert "child_ended = function" in body, f"{name}.lua must include _flows"
        assert "deps" in src.keys
