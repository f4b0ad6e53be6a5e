"""The Prefect API a CLI command talks to: the configured one, or a temporary server tied to this process.

Prefect's own temporary server shares the terminal's process group, so Ctrl-C kills it first and the
interrupted flow then retries its last reports against a dead API for minutes; and a `kill -9` of the
command leaves it running, listening, forever. This one is Prefect's same server (`SubprocessASGIServer`)
started in its own session (Ctrl-C reaches only the command, which reports the interruption to a live
API and then stops it) and with a parent-death signal (it ends with the command, however that ends).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any
from unittest import mock

from prefect.server.api import server as _prefect_server


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TiedServer(_prefect_server.SubprocessASGIServer):
    """Prefect's temporary API server, in its own session and ended by the death of the process that
    started it (Linux: `PR_SET_PDEATHSIG`; elsewhere only the session)."""

    _instances: dict[int | None, Any] = {}  # apart from Prefect's own temporary server

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
            kwargs["start_new_session"] = True
            if sys.platform == "linux":
                kwargs["preexec_fn"] = _die_with_parent
            return subprocess.Popen(*args, **kwargs)

        # Prefect's own command line and environment; only how the process is started differs
        shim = types.SimpleNamespace(**{**vars(subprocess), "Popen": popen})
        with mock.patch.object(_prefect_server, "subprocess", shim):
            return super()._run_uvicorn_command()


@contextlib.contextmanager
def prefect_api() -> Iterator[str | None]:
    """Yields the API URL in use: `PREFECT_API_URL` when set (a real server: nothing to start), else a
    `TiedServer` on a free local port for the duration of the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    server = TiedServer()
    server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_clients()
        server.stop()


def _drain_clients(timeout: float = 10) -> None:
    """Send the logs and events still queued while the server is up; at interpreter exit they would go
    to a stopped server and end the output with 'All connection attempts failed'."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout, at_exit=False)
