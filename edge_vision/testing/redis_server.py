"""A real Redis server for tests: ``redis-server`` as a child process on 127.0.0.1.

``RedisTestServer`` runs without persistence in a temporary directory. ``stop()`` kills it
(SIGKILL, like a crash, so clients see their connections drop) and ``start()`` brings it back
on the same port, empty. Use ``redis_server_unavailable_reason()`` to skip tests where
``redis-server`` is not installed (Debian/Ubuntu: ``apt-get install redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from edge_vision.testing.rtsp_server import find_free_port

__all__ = ["RedisTestServer", "redis_server_unavailable_reason"]


def redis_server_unavailable_reason() -> str | None:
    """None if ``redis-server`` can be started here, else why not (for ``pytest.skip``)."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    return None


def _ping(port: int, timeout: float = 0.5) -> bool:
    # Raw RESP inline command: keeps this helper free of a redis-py dependency.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisTestServer:
    """``redis-server`` on ``127.0.0.1:<port>``; ``port=None`` picks a free one on the first
    ``start()`` and keeps it. A context manager (start on enter, stop on exit)."""

    def __init__(self, port: int | None = None, *, startup_timeout_s: float = 10.0) -> None:
        self._port = port
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = find_free_port()
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            return
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        log = Path(self._dir.name) / "redis.log"
        command = [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", self._dir.name,
            "--logfile", str(log),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self._startup_timeout_s
        while not _ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {text}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: an abrupt outage; nothing is saved)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
