"""Start a server process on loopback and drive load at it with wrk.

Load only ever targets 127.0.0.1, bounded in time (``seconds``) and
connections. Ratios are what matter: compare routes measured in one run on the
same server process, since this machine is shared and noisy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
_PIDS: dict[str, int] = {}  # base URL -> server process id


def server_pid(base: str) -> int:
    """The process serving ``base`` (a scenario reads its memory from /proc)."""
    return _PIDS[base]


def _ws_deflate(env: dict[str, str]) -> bool:
    from service.settings import load_settings

    name = "QSITE_WS_PER_MESSAGE_DEFLATE"
    value = env.get(name, os.environ.get(name))
    return load_settings({name: value} if value is not None else {}).ws_per_message_deflate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(env: dict[str, str], server: str = "uvicorn") -> Iterator[str]:
    """Run the bench app in a child process; yields its base URL."""
    port = free_port()
    if server == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.server:create", "--port", str(port),
               "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
               # What `qsite serve` passes from QSITE_WS_PER_MESSAGE_DEFLATE (service.__main__.server_config).
               "--ws-per-message-deflate", str(_ws_deflate(env)).lower()]
    elif server == "granian":
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "bench.server:create",
               "--port", str(port), "--host", "127.0.0.1", "--loop", "uvloop", "--no-ws", "--log-level", "warning"]
    else:
        raise ValueError(server)
    log_path = Path(tempfile.gettempdir()) / f"qsite-bench-{port}.log"
    log_file = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stderr=log_file)
    base = f"http://127.0.0.1:{port}"
    _PIDS[base] = proc.pid
    try:
        deadline = time.monotonic() + 180  # start-up (the contract's error codes read from source) takes minutes at load average 10+
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server} did not start; its log: {log_path}")
            time.sleep(0.2)
        yield base
    finally:
        _PIDS.pop(base, None)
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
        log_file.close()


@dataclass
class Result:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int

    def line(self, baseline: float | None = None) -> str:
        ratio = f"  ratio {self.rps / baseline:.2f}" if baseline else ""
        return f"{self.label:<38} {self.rps:>9.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  non-2xx/3xx {self.non_2xx}{ratio}"


_LUA = """
wrk.method = "{method}"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))
end
"""

_LUA_UNIQUE = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.gsub(template, "__N__", string.format("%08x-0000-4000-8000-%012x", math.random(0, 0x7fffffff), counter))
  return wrk.format(nil, nil, nil, body)
end
"""


def wrk(
    label: str,
    url: str,
    *,
    seconds: int = 5,
    connections: int = 16,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    unique_body: bool = False,
) -> Result:
    """Run wrk for ``seconds``; with ``unique_body`` each request's ``__N__`` becomes a fresh UUID."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench does this)")
    header_lines = "\n".join(f'wrk.headers["{k}"] = {_lua_str(v)}' for k, v in (headers or {}).items())
    script = _LUA.format(method=method, body=_lua_str(body) if body and not unique_body else "nil", headers=header_lines)
    if unique_body and body:
        script += f"template = {_lua_str(body)}\n" + _LUA_UNIQUE
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", f.name, url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    os.unlink(f.name)
    if "P50" not in out:
        raise RuntimeError(f"wrk measured nothing for {label}: {out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)) else 0
    p50 = int(re.search(r"P50 (\d+)", out).group(1)) / 1000
    p99 = int(re.search(r"P99 (\d+)", out).group(1)) / 1000
    return Result(label, rps, p50, p99, non2xx)


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"
