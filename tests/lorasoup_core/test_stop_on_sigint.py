"""Ctrl-C reaches loops in worker threads: the main thread's SIGINT also stops them at their next step."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from lorasoup_core import interrupt


@pytest.fixture
def sigint_as_in_a_terminal():
    """SIGINT handled as in a terminal's foreground job (a runner started in the background may have
    inherited SIG_IGN); the runner's own disposition is restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_sigint_stops_a_worker_loop_and_the_handler_is_restored(sigint_as_in_a_terminal):
    failure: list[BaseException] = []
    started = threading.Event()

    def worker() -> None:  # a training loop in Prefect's thread pool
        try:
            while True:
                interrupt.check()
                started.set()
                threading.Event().wait(0.001)
        except BaseException as exc:  # noqa: BLE001 (what the loop ended with is the result)
            failure.append(exc)

    with pytest.raises(KeyboardInterrupt), interrupt.stop_on_sigint():
        thread = threading.Thread(target=worker)
        thread.start()
        assert started.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(10)  # the main thread is interrupted here
    thread.join(10)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], interrupt.Interrupted), failure
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt.stop_on_sigint():
        interrupt.check()  # a later run in this process starts afresh


def test_a_process_that_ignores_sigint_is_not_stopped(sigint_as_in_a_terminal):
    """`nohup` or a script's background job: SIGINT was ignored before, and stays ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupt.stop_on_sigint():
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(0.2)
        interrupt.check()  # not stopped
