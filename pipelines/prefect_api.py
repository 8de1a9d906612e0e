"""Prefect's ephemeral API started early: its server process boots (imports, database check) while the
command goes on importing the audit's modules and reading its configuration, instead of after.

On a 2-core machine both take seconds (benchmarks/RESULTS.md); overlapped, the operator waits for the
longer one, not for their sum. Kept apart from ``flows.py`` so that starting it imports little.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import suppress

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # as pipelines/flows.py: decided before Prefect loads
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def warm() -> Callable[[], None]:
    """Start the ephemeral API server in the background unless ``PREFECT_API_URL`` names a server;
    returns the wait to call before the first flow runs (a start that failed is left to the flow,
    which starts it again and reports what went wrong)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return lambda: None

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        with suppress(Exception):  # a start that failed: the flow's own start says why
            SubprocessASGIServer().start()  # the instance get_client uses: started once per process

    t = threading.Thread(target=start, name="healthqa-prefect-api", daemon=True)
    t.start()
    return t.join
