"""`lorasoup run` interrupted as a user would: Ctrl-C in the terminal (SIGINT to its process group) ends it
promptly with one message, and `kill -9` of the command does not leave its temporary Prefect server
listening."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.flows.conftest import tiny_config, write_config

pytestmark = pytest.mark.slow
LORASOUP = str(Path(sys.executable).parent / "lorasoup")


class _Run:
    """`lorasoup run` in its own process group (as a terminal's foreground job), its output collected."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        # SIGINT as in a terminal: a runner started in the background passes SIG_IGN on to its children
        self.proc = subprocess.Popen([LORASOUP, "run", "--config", str(config)], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(65536):
            self.output += chunk

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if m := re.search(pattern, self.text):
                return m
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {pattern!r}:\n{self.text[-4000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text[-4000:]}")

    def server_port(self) -> int:
        return int(self.wait_for(r"Starting temporary server on http://127\.0\.0\.1:(\d+)").group(1))

    def kill_all(self) -> None:
        with _quiet():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        return kind is not None and issubclass(kind, (ProcessLookupError, psutil.Error))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _kill_listener(port: int) -> None:
    """Leave no server behind when an assertion failed: whoever listens on the port."""
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            with _quiet():
                psutil.Process(conn.pid).kill()


def test_ctrl_c_ends_run_promptly_and_kill_9_leaves_no_server(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["pool"]["training"]["steps"] = 100_000  # still training when interrupted
    config = write_config(tmp_path, cfg)
    env = {**os.environ, "LORASOUP_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)

    # Ctrl-C: SIGINT to the whole foreground group, while an adapter trains
    run = _Run(config, env)
    port = run.server_port()
    try:
        run.wait_for(r"train \w+:")
        before = len(run.text.splitlines())
        os.killpg(run.proc.pid, signal.SIGINT)
        start = time.time()
        try:
            code = run.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 90 s after Ctrl-C:\n{run.text[-4000:]}")
        seconds = time.time() - start
        run._reader.join(timeout=10)
        after = run.text.splitlines()[before:]
        shown = f"exit {code} after {seconds:.1f} s, {len(after)} lines after Ctrl-C:\n" + "\n".join(after[-80:])
        assert code != 0 and len(after) < 150, shown
        assert "interrupted: experiment" in run.text and "Traceback" not in "\n".join(after), shown
        assert not _listening(port), shown  # the temporary server was stopped with it
    finally:
        run.kill_all()
        _kill_listener(port)

    # kill -9 of the command alone: its temporary server goes with it
    run = _Run(config, env)
    port = run.server_port()
    try:
        deadline = time.time() + 120
        while not _listening(port) and time.time() < deadline:
            time.sleep(0.2)
        assert _listening(port), run.text[-4000:]
        os.kill(run.proc.pid, signal.SIGKILL)
        deadline = time.time() + 30
        while _listening(port) and time.time() < deadline:
            time.sleep(0.5)
        assert not _listening(port), f"the temporary Prefect server outlived kill -9:\n{run.text[-4000:]}"
    finally:
        run.kill_all()
        _kill_listener(port)
