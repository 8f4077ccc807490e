"""Kernel signals of writes to a file, which let the poller sleep between commits."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from corral.backends.sqlite.filewatch import FileWatch

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="inotify is Linux's"
)


def watched(tmp_path: Path) -> tuple[Path, FileWatch]:
    path = tmp_path / "log"
    path.write_bytes(b"")
    watch = FileWatch.open(str(path))
    assert watch is not None
    return path, watch


def append(path: Path, times: int = 1) -> None:
    with path.open("ab") as out:
        for _ in range(times):
            out.write(b"frame")
            out.flush()


def test_a_write_signals_once_until_armed_again(tmp_path: Path) -> None:
    path, watch = watched(tmp_path)
    try:
        assert not watch.wait(0.01)
        append(path, 100)
        assert watch.wait(5)
        append(path)
        assert not watch.wait(0.01)
        watch.arm()
        assert not watch.wait(0.01)
        append(path)
        assert watch.wait(5)
        assert watch.alive
    finally:
        watch.close()


def test_a_removed_file_ends_the_watch(tmp_path: Path) -> None:
    path, watch = watched(tmp_path)
    try:
        os.remove(path)
        assert watch.wait(5)
        assert not watch.alive
    finally:
        watch.close()


def test_arming_follows_a_replaced_file(tmp_path: Path) -> None:
    path, watch = watched(tmp_path)
    try:
        append(path)
        assert watch.wait(5)
        replacement = tmp_path / "new"
        replacement.write_bytes(b"")
        os.replace(replacement, path)
        watch.arm()
        append(path)
        assert watch.wait(5)
        assert watch.alive
    finally:
        watch.close()


def test_no_watch_on_a_missing_file(tmp_path: Path) -> None:
    assert FileWatch.open(str(tmp_path / "missing")) is None
