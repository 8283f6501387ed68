"""Offline replay helpers: the apps' SyncWrites operation and queued-write builders."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from service.api.persisted import operation_document

ROOT = Path(__file__).resolve().parents[2]
SYNC = operation_document(ROOT / "graphql" / "operations" / "SyncWrites.graphql")


def queued(op: str, /, key: str | None = None, **fields: Any) -> dict[str, Any]:
    """One queued write: ``op`` is the SyncWrite field (``acknowledgeAlert``), ``fields`` its input."""
    return {"key": f"w-{uuid.uuid4()}" if key is None else key, "write": {op: fields}}


async def sync(client: Any, headers: dict[str, str], writes: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": SYNC, "variables": {"input": {"writes": writes}}}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["syncWrites"]
