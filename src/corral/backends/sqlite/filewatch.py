"""Kernel signals of writes to a file (Linux inotify), so that a thread waiting for another
process's commit can sleep until the commit writes the write-ahead log instead of polling.

Where the kernel offers no such signal (another system, no inotify, the watch limit
reached), `open` returns None and the caller polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
import sys
from collections.abc import Callable
from typing import Final

_IN_MODIFY: Final = 0x002
_IN_DELETE_SELF: Final = 0x400
_IN_MOVE_SELF: Final = 0x800
_IN_ONESHOT: Final = 0x80000000
_MASK: Final = _IN_MODIFY | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONESHOT
"""One signal per arming: each signal costs the writer a queued event and a wake-up of
the watcher, and a watcher that armed itself again at once while a commit wrote its
frames got one per frame (a six-page commit took 80 µs instead of 50)."""
_GONE: Final = _IN_DELETE_SELF | _IN_MOVE_SELF
_EVENT: Final = struct.Struct("iIII")
"""`struct inotify_event` up to its name: wd, mask, cookie, len."""

_Function = Callable[..., int]
_inotify: tuple[_Function, _Function] | None = None
_looked_up = False


def _functions() -> tuple[_Function, _Function] | None:
    """inotify_init1 and inotify_add_watch from the C library (None where there are none)."""
    global _inotify, _looked_up
    if not _looked_up:
        _looked_up = True
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                init, add = libc.inotify_init1, libc.inotify_add_watch
                init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
                add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
                add.restype = ctypes.c_int
                _inotify = (init, add)
    return _inotify


class FileWatch:
    """Signals the first write to a file after each arming; used by one thread.

    A reader of the file's state needs no more: arm, read the state, and wait; after a
    signal, read the state until it shows the write, then arm and read again.
    """

    def __init__(self, fd: int, path: bytes, add: _Function) -> None:
        self._fd = fd
        self._path = path
        self._add = add
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.alive = True
        """False once the file was removed or replaced: open a new watch."""
        self.armed = False
        """Whether the next write signals."""

    @classmethod
    def open(cls, path: str) -> FileWatch | None:
        """An armed watch on writes to the existing file at `path`, or None when there
        can be none."""
        functions = _functions()
        if functions is None:
            return None
        init, add = functions
        fd = int(init(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            return None
        watch = cls(fd, os.fsencode(path), add)
        watch.arm()
        if not watch.alive:
            watch.close()
            return None
        return watch

    def arm(self) -> None:
        """Signal the next write (by path: a file replaced since is watched from now on)."""
        if int(self._add(self._fd, self._path, _MASK)) < 0:
            self.alive = False
        self.armed = self.alive

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for a write; True when there was one (or the
        watch broke, which may hide one). Consumes the signal: arm again to see more."""
        # poll() counts whole milliseconds: round up, so that a short wait still blocks.
        if not self._poll.poll(max(0, int(timeout * 1000 + 0.999))):
            return False
        written = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            except OSError:
                self.alive = False
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                # A watch that fired also reports its end (IN_IGNORED): no write.
                written = written or bool(mask & _IN_MODIFY)
                if mask & _GONE:
                    self.alive = False
                offset += _EVENT.size + length
            if not data:
                break
        self.armed = self.armed and not written
        return written or not self.alive

    def close(self) -> None:
        """Stop watching."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
