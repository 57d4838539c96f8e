"""Two broken Redis servers on 127.0.0.1, for the outage tests (no mock: real sockets).

- :class:`HungListener` accepts connections and never answers a byte: the worst Redis
  outage (a stopped process, a half-dead host), where a client waits out its timeout.
  The kernel completes the handshakes (``listen`` backlog); :meth:`HungListener.accept`
  takes them and counts them, which is how a test sees who touched the network.
- :class:`ClosingRedis` answers the connection handshake (``HELLO``, ``CLIENT SETINFO``)
  like Redis, then closes the connection on every script command, counting them: how a
  test sees whether a client retried a failed command by itself.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator


class HungListener:
    """A TCP listener that accepts and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def accept(self) -> int:
        """Accept every pending connection (and keep it, silent); how many were pending."""
        new = 0
        while True:  # bounded: the backlog holds at most 128
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return new
            self.held.append(conn)
            new += 1

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@contextlib.contextmanager
def hung_listener() -> Iterator[HungListener]:
    """A :class:`HungListener`, closed on exit."""
    listener = HungListener()
    try:
        yield listener
    finally:
        listener.close()


def _command(buffer: bytearray) -> list[bytes] | None:
    """Take one RESP command (an array of bulk strings) off *buffer*; None until complete."""
    if not buffer.startswith(b"*") or (end := buffer.find(b"\r\n")) < 0:
        return None
    count, pos, parts = int(buffer[1:end]), end + 2, []
    for _ in range(count):
        if (end := buffer.find(b"\r\n", pos)) < 0:
            return None
        size, start = int(buffer[pos + 1 : end]), end + 2
        if len(buffer) < start + size + 2:
            return None
        parts.append(bytes(buffer[start : start + size]))
        pos = start + size + 2
    del buffer[:pos]
    return parts


class ClosingRedis:
    """Speaks Redis's handshake, then drops the connection at each ``EVALSHA``/``EVAL``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.scripts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            buffers: dict[socket.socket, bytearray] = {}
            while not self._stop.is_set():  # bounded: close() sets it
                for key, _ in sel.select(timeout=0.05):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is self.sock:
                        conn, _ = sock.accept()
                        buffers[conn] = bytearray()
                        sel.register(conn, selectors.EVENT_READ)
                        continue
                    data = sock.recv(65536)
                    if data and self._answer(sock, buffers[sock], data):
                        continue
                    sel.unregister(sock)
                    sock.close()
                    del buffers[sock]
            for conn in buffers:
                conn.close()

    def _answer(self, conn: socket.socket, buffer: bytearray, data: bytes) -> bool:
        """Reply to what arrived; False to drop the connection."""
        buffer += data
        while (command := _command(buffer)) is not None:
            name = command[0].upper()
            if name in {b"EVALSHA", b"EVAL"}:
                self.scripts += 1
                return False
            conn.sendall(b"%1\r\n+proto\r\n:3\r\n" if name == b"HELLO" else b"+OK\r\n")
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@contextlib.contextmanager
def closing_redis() -> Iterator[ClosingRedis]:
    """A :class:`ClosingRedis`, stopped on exit."""
    server = ClosingRedis()
    try:
        yield server
    finally:
        server.close()
