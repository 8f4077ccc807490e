"""Adding jobs: states, duplicate ids, stale settings, order of claiming."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.backends.base import Backend, Limits, StoredConfig
from corral.backends.sqlite import SqliteBackend
from corral.errors import InvalidOptionError
from tests.backends.protocol.support import T0, new_job
from tests.backends.sqlite.sqlite_support import file_names


def test_is_a_backend(db_path: str) -> None:
    store: Backend = SqliteBackend(db_path, {"synchronous": "full", "busy_timeout": "2.5"})
    assert store.kind == "sqlite"


@pytest.mark.parametrize(
    "params",
    [{"synchronous": "sometimes"}, {"busy_timeout": "soon"}, {"busy_timeout": "-1"}, {"x": "1"}],
)
def test_bad_url_parameters_are_refused_at_construction(
    db_path: str, params: dict[str, str]
) -> None:
    with pytest.raises(InvalidOptionError):
        SqliteBackend(db_path, params)


async def test_construction_does_no_io_and_first_use_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    store = SqliteBackend(str(path), {})
    try:
        assert file_names(tmp_path) == set()
        assert await store.ping()
        assert "lazy.db" in file_names(tmp_path)
    finally:
        await store.close()


async def test_a_stale_config_version_writes_nothing(backend: SqliteBackend) -> None:
    stale = await backend.add("q", [new_job("a")], 1, T0)
    assert (stale.records, stale.stale_config) == ([], True)
    assert await backend.get_config("q") == StoredConfig(None, 0)
    assert await backend.set_config("q", '{"concurrency": 2}', Limits(concurrency=2)) == 1
    assert await backend.set_config("q", '{"concurrency": 3}', Limits(concurrency=3)) == 2
    assert (await backend.add("q", [new_job("a")], 1, T0)).stale_config
    assert not (await backend.add("q", [new_job("a")], 2, T0)).stale_config
    assert await backend.get_config("q") == StoredConfig('{"concurrency": 3}', 2)
    assert await backend.get_job("q", "a") is not None
