"""A real ``redis-server`` for the tests that share state through Redis.

Started once per test session on a free loopback port, with no persistence, in a
temporary directory; stopped at the end. Tests take the ``redis_server`` fixture
(``tests/conftest.py``), or a fresh client with ``redis_client``, which flushes the
database first. A machine without the binary fails those tests with the command that
installs it (Debian's package: ``apt-get install redis-server``) — never a skip, and
never a mock.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

INSTALL_HINT = (
    "these tests need a real redis-server binary on PATH (Debian: "
    "`apt-get install -y redis-server`; .ci/run installs it when missing)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class RedisServer:
    """One running ``redis-server``: its port and URL; :meth:`stop`/:meth:`start` for faults."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded: the server answers within the timeout
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                msg = f"redis-server exited at start (code {self.process.returncode}): {err}"
                raise RuntimeError(msg)
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.stop()
        msg = f"redis-server did not answer PING on 127.0.0.1:{self.port} within {timeout} s"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, as the fault tests want it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started server on a free port, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="rp-redis-") as tmp:
        server = RedisServer(port=free_port(), directory=Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()
