"""The committed contracts are what the code exports: regenerate with `make schemas`."""

from pathlib import Path

import pytest

from service.__main__ import GRAPHQL_PATH, OPENAPI_PATH, export_schemas

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("relative", [OPENAPI_PATH, GRAPHQL_PATH], ids=str)
def test_committed_contract_matches_code(tmp_path, relative):
    export_schemas(tmp_path)
    exported = (tmp_path / relative).read_text()
    committed = (ROOT / relative).read_text()
    assert exported == committed, f"{relative} is stale: run `make schemas` and commit it"
