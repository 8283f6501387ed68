"""A PostgreSQL server of the test's own (the machine's binaries, initdb into a temporary
directory, a free port), which the test may kill, stop and restart. Never the shared one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil

from tests.faults.server import free_port


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise RuntimeError("no PostgreSQL binaries (initdb) on this machine")
    return candidates[-1].parent


class OwnPostgres:
    """``start()``, ``kill()`` (SIGKILL to every server process), ``pause()`` / ``resume()``
    (SIGSTOP / SIGCONT: a hung server whose port still accepts TCP), ``close()``."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="qsite-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # initdb and postgres refuse to run as root: run them as the machine's postgres user.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, user=self.user,
        )

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def start(self, timeout: float = 30.0) -> float:
        """Start the server (recovering after a kill); returns when it accepts connections (monotonic time)."""
        self.process = subprocess.Popen(
            [
                self.bin / "postgres", "-D", self.data, "-p", str(self.port), "-k", self.root,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=60",
                "-c", "shared_buffers=16MB", "-c", "logging_collector=off",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=self.user,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.dsn(), timeout=1)
                await conn.close()
                return time.monotonic()
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"own PostgreSQL did not start (exit {self.process.poll()})") from None
                await asyncio.sleep(0.05)

    def _processes(self) -> list[psutil.Process]:
        """The postmaster and its children (each backend runs in a session of its own, so no
        process group reaches them all)."""
        assert self.process is not None
        try:
            postmaster = psutil.Process(self.process.pid)
            return [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _signal(self, sig: signal.Signals) -> list[psutil.Process]:
        processes = self._processes()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
        return processes

    async def kill(self) -> None:
        """kill -9 every server process, as a crash would; wait until they are gone."""
        processes = self._signal(signal.SIGKILL)
        self.process.wait()
        await asyncio.to_thread(psutil.wait_procs, processes, 10)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGCONT)
            psutil.wait_procs(self._signal(signal.SIGKILL), 10)
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
