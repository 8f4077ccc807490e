"""Checkpoints of the write-ahead log in a thread of their own, off the transitions' path.

SQLite copies the WAL back into the database file (a checkpoint: an fsync of the WAL, the
copy, an fsync of the file) in the commit that makes the WAL pass `wal_autocheckpoint`
pages, 1000 by default: left to itself, one settle or add in a hundred or so took 10-25 ms
instead of a fraction of one, most of the p99 of add→start and a fifth of a worker's
time per job. So each process that commits to a file also runs one checkpointer thread
for it, with a connection of its own: while the process commits, it runs a PASSIVE
checkpoint (which never waits for, nor blocks, readers and writers) every `EVERY`
seconds, and it stops after `LINGER` seconds without commits.

The automatic checkpoint stays at `SAFETY_PAGES` (set by `connect`): under a steady
stream of commits it is still what lets the WAL start over from its beginning, so the WAL
keeps its size instead of growing (a growing file allocates blocks while fsyncs run: stalls
of 100+ ms were seen with a limit of 4000 pages), but it finds most of the copying and
syncing already done.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Final

from corral import clock

EVERY: Final = 0.1
"""Seconds between two checkpoints while the process commits."""
LINGER: Final = 5.0
"""Seconds without a commit after which the thread stops."""
SAFETY_PAGES: Final = 1000
"""`wal_autocheckpoint` of the transitions' connections (4 KiB pages)."""

_lock = threading.Lock()
_files: dict[str, _Checkpointer] = {}


def _forget_after_fork() -> None:
    # A forked child inherits the registry but not the threads: start afresh.
    global _lock, _files
    _lock = threading.Lock()
    _files = {}


os.register_at_fork(after_in_child=_forget_after_fork)


@dataclass(eq=False)
class _Checkpointer:
    """The checkpoints of one database file in this process."""

    path: str
    synchronous: str
    dirty: bool = False
    last_commit: float = 0.0
    thread: threading.Thread | None = None

    def run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                clock.sleep_blocking(EVERY)
                with _lock:
                    dirty, self.dirty = self.dirty, False
                    if not dirty and clock.monotonic() - self.last_commit > LINGER:
                        self.thread = None
                        return
                if not dirty:
                    continue
                try:
                    if conn is None:
                        conn = sqlite3.connect(
                            self.path, timeout=0, isolation_level=None,
                            check_same_thread=False,
                        )
                        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    # Busy (another process checkpoints, or creates the schema), or a
                    # broken file whose next transition reports it: try again after the
                    # next commit.
                    if conn is not None:
                        with contextlib.suppress(sqlite3.Error):
                            conn.close()
                    conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


def committed(path: str, synchronous: str) -> None:
    """Note a commit to the database at `path`: its WAL is checkpointed soon."""
    with _lock:
        checkpointer = _files.get(path)
        if checkpointer is None:
            checkpointer = _files[path] = _Checkpointer(path, synchronous)
        checkpointer.dirty = True
        checkpointer.last_commit = clock.monotonic()
        if checkpointer.thread is None:
            checkpointer.thread = threading.Thread(
                target=checkpointer.run, name="corral-sqlite-checkpoint", daemon=True
            )
            checkpointer.thread.start()
