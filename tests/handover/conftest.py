"""Hand-over tests are about the hand-over's rules: the health domain's test-result rule answers none (tests/health covers it)."""

import pytest

from tests.stays.helpers import without_health_blockers


@pytest.fixture(autouse=True)
def _tests_negative(monkeypatch):
    without_health_blockers(monkeypatch)
