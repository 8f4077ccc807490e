"""A loopback TCP proxy that adds latency, holds traffic (a blackhole) or resets connections.

    proxy = FaultProxy(upstream_port); proxy.start()   # clients connect to proxy.port
    proxy.latency = 0.3      # each chunk is delivered 300 ms late, in each direction
    proxy.blackhole(True)    # nothing is delivered (held, as TCP would retransmit later)
    proxy.hold_replies(True) # requests reach the server, its replies are held
    proxy.reset_all()        # every open connection is reset (RST to both sides)
    proxy.close()

Threads only: one accept thread, and per connection and direction one reader (which
stamps each chunk with its due time) and one writer (which delivers it when due and the
blackhole is off), so latency delays data without throttling it.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self, reset: bool = False) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`, with faults on demand."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.latency = 0.0
        self._up = threading.Event()  # client -> server flows
        self._down = threading.Event()  # server -> client flows
        self._up.set()
        self._down.set()
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self.connections = 0
        self.resets = 0

    def start(self) -> None:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def blackhole(self, on: bool) -> None:
        """While on, nothing is delivered either way; held data flows when it ends."""
        for gate in (self._up, self._down):
            if on:
                gate.clear()
            else:
                gate.set()

    def hold_replies(self, on: bool) -> None:
        """While on, what the server sends is held; requests still reach it."""
        if on:
            self._down.clear()
        else:
            self._down.set()

    def reset_all(self) -> int:
        """Reset every open connection; how many there were."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close(reset=True)
        self.resets += len(links)
        return len(links)

    def close(self) -> None:
        self._stopped.set()
        self._up.set()
        self._down.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset_all()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
                self.connections += 1
            self._pipe(link, client, server, self._up)
            self._pipe(link, server, client, self._down)

    def _pipe(
        self, link: _Link, source: socket.socket, target: socket.socket, gate: threading.Event
    ) -> None:
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=self._read, args=(source, chunks), daemon=True).start()
        threading.Thread(target=self._write, args=(link, target, chunks, gate),
                         daemon=True).start()

    def _read(self, source: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        """Stamp each chunk with its due time; b"" marks the end of the stream."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.latency, data))
            if not data:
                return

    def _write(
        self, link: _Link, target: socket.socket, chunks: queue.Queue[tuple[float, bytes]],
        gate: threading.Event,
    ) -> None:
        """Deliver each chunk when it is due and its direction is not held."""
        while True:
            due, data = chunks.get()
            while not gate.wait(0.05):
                if link.closed.is_set():
                    return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if link.closed.is_set():
                return
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            try:
                target.sendall(data)
            except OSError:
                link.close()
                return
