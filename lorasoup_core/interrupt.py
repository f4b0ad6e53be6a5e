"""Cooperative stop for long loops running in worker threads.

Prefect runs tasks in a thread pool and, on Ctrl-C, waits for the running ones to finish before the flow
can end: a training run of 100 000 steps would keep the terminal for half an hour. The main thread's
SIGINT handler sets a flag; training, search, CAT and evaluation loops call `check()` once per step and
stop with `Interrupted`, so the flow ends (and is reported) within one step.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

_STOP = threading.Event()
_REPORTED = threading.Event()


class Interrupted(RuntimeError):
    """Raised inside a long loop after the user asked the process to stop."""


def check() -> None:
    """Raise `Interrupted` when a stop was requested; cheap enough to call once per step."""
    if _STOP.is_set():
        raise Interrupted("interrupted (Ctrl-C): stopped before finishing")


def requested() -> bool:
    """True once SIGINT asked this process to stop (inside a `stop_on_sigint` block)."""
    return _STOP.is_set()


def report_stopped(what: str, kept: str = "what finished is kept") -> None:
    """The one line an interrupted command ends with, on stderr; said once per process (the command's own
    handler says it first, the CLI's entry point only when no one has)."""
    if not _REPORTED.is_set():
        _REPORTED.set()
        print(f"interrupted: {what} stopped; {kept}, run the same command to resume", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[None]:
    """For the duration of the block, SIGINT also asks worker loops to stop (then behaves as before:
    KeyboardInterrupt in the main thread). A no-op outside the main thread and where SIGINT is ignored
    (`nohup`, a background job of a script): that process asked not to be interrupted. The stop stays
    requested after the block (workers of an interrupted block may still be running) until the next
    block starts."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return
    _STOP.clear()

    def handler(signum: int, frame: object) -> None:
        _STOP.set()
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt  # SIG_DFL would end the process: end it the way Python does

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
