"""A byte-exact HTTP/1.1 server on 127.0.0.1 for what FakeEUGPT does not script.

Each request gets the next :class:`Wire` reply of the script (the last one repeats):
the exact head and body bytes, then a clean end, a close, or a reset (RST). Tests
use it for gzip-encoded bodies and streams, connections cut *after* a stream
completed, and malformed error events — the wire shapes the contract rules on.
"""

from __future__ import annotations

import gzip
import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

End = Literal["keep", "close", "reset"]


@dataclass(frozen=True)
class Wire:
    """One scripted reply: status, headers, body chunks, and how the connection ends."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    chunks: tuple[bytes, ...] = ()
    end: End = "keep"
    chunked: bool = True
    pause: float = 0.0
    """Seconds the server waits between chunks, so that a client reads them apart (a
    client that reads whatever is buffered, like aiohttp's, would otherwise merge them)."""

    def render(self) -> Iterator[bytes]:
        """The bytes on the wire, a piece per chunk (each flushed on its own)."""
        head = [f"HTTP/1.1 {self.status} X"]
        head += [f"{k}: {v}" for k, v in self.headers]
        if self.chunked:
            head.append("Transfer-Encoding: chunked")
        else:
            head.append(f"Content-Length: {sum(map(len, self.chunks))}")
        if self.end != "keep":
            head.append("Connection: close")
        yield ("\r\n".join(head) + "\r\n\r\n").encode()
        for chunk in self.chunks:
            yield (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if self.chunked else chunk
        if self.chunked and self.end == "keep":
            yield b"0\r\n\r\n"


def event(obj: object) -> bytes:
    """One SSE frame as the API writes it."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"event: message\ndata: {data}\n\n".encode()


def events(*objs: object) -> bytes:
    return b"".join(event(o) for o in objs)


CREATED = {"type": "response.created", "sequence_number": 0}
DELTA = {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hel"}
COMPLETED = {"type": "response.completed", "sequence_number": 2, "response": {"id": "r"}}
SSE = (("Content-Type", "text/event-stream"),)


def completed_stream() -> bytes:
    return events(CREATED, DELTA, COMPLETED)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def stream(
    *chunks: bytes,
    end: End = "keep",
    headers: Sequence[tuple[str, str]] = (),
    pause: float = 0.0,
) -> Wire:
    return Wire(200, (*SSE, *headers), chunks, end, pause=pause)


def envelope(status: int, code: str) -> bytes:
    """An error envelope with *code* (the status is the reply's; named for readability)."""
    del status
    return json.dumps(
        {"detail": "x", "error": {"type": "t", "code": code, "message": "m"}}
    ).encode()


@dataclass
class WireServer:
    """Serves *script* on a free loopback port; ``hits`` counts requests received."""

    script: Sequence[Wire]
    hits: int = 0
    bodies: list[bytes] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/v1/responses"

    def __enter__(self) -> WireServer:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while owner._serve_one(self.rfile, self.connection):
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _serve_one(self, rfile: object, conn: socket.socket) -> bool:
        """Read one request, play the next reply; False when the connection is done."""
        reader = rfile  # a buffered reader
        length = 0
        chunked = False
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return False
        while True:
            h = reader.readline()  # type: ignore[attr-defined]
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        body = b""
        if chunked:
            while True:
                size = int(reader.readline().strip() or b"0", 16)  # type: ignore[attr-defined]
                if size == 0:
                    reader.readline()  # type: ignore[attr-defined]
                    break
                body += reader.read(size)  # type: ignore[attr-defined]
                reader.readline()  # type: ignore[attr-defined]
        elif length:
            body = reader.read(length)  # type: ignore[attr-defined]
        self.bodies.append(body)
        reply = self.script[min(self.hits, len(self.script) - 1)]
        self.hits += 1
        try:
            for i, piece in enumerate(reply.render()):
                if reply.pause and i > 1:  # after the head and the first chunk
                    time.sleep(reply.pause)  # the network's pacing, on the server's thread
                conn.sendall(piece)
        except OSError:
            return False
        if reply.end == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        return reply.end == "keep"
