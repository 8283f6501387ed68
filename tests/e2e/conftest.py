"""Browser tests run by `make e2e` only (QSITE_E2E=1): plain `pytest` does not collect them, since
they need Debian's Chromium and the `e2e` extra (Playwright for Python)."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("QSITE_E2E") else ["test_*.py"]
