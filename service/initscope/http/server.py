"""The one way the service is served: ``initscope serve`` and ``python -m initscope`` both call
:func:`serve`.

uvicorn serves the app built from the settings (``host``, ``port``, ``log_level``,
``log_json``), with the JSON request log of :mod:`initscope.http.logs` instead of uvicorn's
access log. On SIGTERM or SIGINT the runner starts draining at once (``/readyz`` 503, new work
503 ``ShuttingDown``) while uvicorn stops accepting connections and waits for the requests in
flight; what still runs ``shutdown_timeout_s`` later is killed and answered 503. Then the
lifespan stops the workers and the process exits 0.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from initscope.config import Settings
from initscope.http import logs
from initscope.http.api import create_app
from initscope.runner import Runner


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runner: Runner | None = getattr(self._app.state, "runner", None)
        if runner is not None:
            runner.begin_drain()
        super().handle_exit(sig, frame)


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    sys.exit(0)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then drain; returns (or exits 0) once stopped."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) + 2,  # a backstop
        log_config=logs.log_config(settings.log_level, settings.log_json),
        access_log=False,  # initscope.http.logs writes one JSON line per request instead
    )
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with the
    # default action that would end a clean drain with status 143 instead of 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    _Server(config, app).run()
