"""Ctrl-C reaches loops in worker threads: the main thread's SIGINT also stops them at their next step."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from lorasoup_core import interrupt


def test_sigint_stops_a_worker_loop_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    steps: list[int] = []
    failure: list[BaseException] = []
    started = threading.Event()

    def worker() -> None:  # a training loop in Prefect's thread pool
        try:
            for step in range(10**9):
                interrupt.check()
                steps.append(step)
                started.set()
                threading.Event().wait(0.001)
        except BaseException as exc:  # noqa: BLE001 (what the loop ended with is the result)
            failure.append(exc)

    with pytest.raises(KeyboardInterrupt), interrupt.stop_on_sigint():
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(10)  # the main thread is interrupted here
    thread.join(10)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], interrupt.Interrupted), failure
    assert signal.getsignal(signal.SIGINT) is before
    with interrupt.stop_on_sigint():
        interrupt.check()  # a later run in this process starts afresh


def test_sigint_ignored_before_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.stop_on_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(interrupt.Interrupted):
                interrupt.check()  # workers still stop
    finally:
        with interrupt.stop_on_sigint():
            pass  # leave no stop requested for the tests after this one
        signal.signal(signal.SIGINT, signal.default_int_handler)
