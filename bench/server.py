"""The app as benchmarks serve it: the product app plus one bare route to compare against.

``/bench/bare`` returns a constant without touching PostgreSQL or Redis: the
ceiling of the framework + server on this machine. Benchmarks report each
route's rate as a ratio of it, measured side by side in one run.
"""

from __future__ import annotations

import os

from litestar import Litestar, get

from service.app import create_app
from service.observability import setup_logging
from service.settings import load_settings


@get("/bench/bare", sync_to_thread=False, exclude_from_auth=True, include_in_schema=False)
def bare() -> dict[str, str]:
    return {"status": "ok"}


def create() -> Litestar:
    """App factory for uvicorn/granian (``--factory``); URLs come from the environment.

    Logging as ``qsite serve`` sets it up (INFO by default: an access line per request), so that
    figures are those of the default server; the harness sends its stderr to a file.
    """
    settings = load_settings(os.environ, run_background_jobs=False)
    setup_logging(settings.log_level)
    app = create_app(settings)
    app.register(bare)
    return app
