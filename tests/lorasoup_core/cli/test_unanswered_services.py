"""A tracking server or S3 endpoint that accepts connections and never answers (a "tarpit") ends `pool
list`, `pool train` and `compose` with one line naming it, instead of minutes of waiting. The subprocess
timeout only turns a hang into a failure; nothing here asserts how long a command took."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LORASOUP = str(Path(sys.executable).parent / "lorasoup")


def _fault_injection():
    spec = importlib.util.spec_from_file_location("fault_injection", REPO / "benchmarks" / "fault_injection.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    return harness


@pytest.fixture
def tarpit() -> Iterator[str]:
    """http://127.0.0.1:<port>: accepts every connection and never sends a byte; closed by the test."""
    with _fault_injection().tarpit() as url:
        yield url


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LORASOUP_HOME": str(tmp_path / "home"), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "OMP_NUM_THREADS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "LORASOUP_STORE": (tmp_path / "store").as_uri()}
    for var in ("LORASOUP_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "LORASOUP_S3_TIMEOUT", "LORASOUP_DEBUG", "LORASOUP_FAULT"):
        env.pop(var, None)
    return {**env, **extra}


def _fails_naming(args: list[str], env: dict[str, str], uri: str, timeout: float = 60) -> None:
    try:
        proc = subprocess.run([LORASOUP, *args], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{args} still waiting on {uri} after {timeout} s; output so far:\n{err.stdout!r}\n{err.stderr!r}")
    shown = f"{args} exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    errors = [line for line in proc.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert proc.returncode != 0, shown
    assert len(errors) == 1 and errors[0].startswith("error: ") and uri in errors[0], shown
    assert "Traceback" not in proc.stderr, shown


def _pool_config(tmp_path: Path, store: str | None = None, tracking: str | None = None) -> Path:
    return _fault_injection().make_pool(tmp_path, n_tasks=1, steps=2, store=store, tracking=tracking)


def test_pool_list_on_a_tracking_server_that_never_answers(tmp_path, tarpit):
    _fails_naming(["pool", "list"], _env(tmp_path, MLFLOW_TRACKING_URI=tarpit), tarpit)


def test_pool_train_on_a_tracking_server_that_never_answers(tmp_path, tarpit):
    config = _pool_config(tmp_path, tracking=tarpit)
    _fails_naming(["pool", "train", "--no-progress", "--config", str(config)], _env(tmp_path), tarpit)
    assert not (tmp_path / "home" / "work").exists()  # nothing trained


def test_pool_train_on_an_s3_store_that_never_answers(tmp_path, tarpit):
    config = _pool_config(tmp_path, store="s3://tarpit-bucket/pool")
    _fails_naming(["pool", "train", "--no-progress", "--config", str(config)],
                  _env(tmp_path, LORASOUP_S3_ENDPOINT_URL=tarpit), tarpit)
    assert not (tmp_path / "home" / "work").exists()


@pytest.mark.parametrize("service", ["tracking", "s3"])
def test_compose_on_a_service_that_never_answers(tmp_path, tarpit, service):
    env = _env(tmp_path, MLFLOW_TRACKING_URI=tarpit) if service == "tracking" else \
        _env(tmp_path, LORASOUP_STORE="s3://tarpit-bucket/x", LORASOUP_S3_ENDPOINT_URL=tarpit)
    _fails_naming(["compose", "--target", "skills:double", "--method", "uniform", "--model", "tiny-llama"], env,
                  tarpit)


def test_mlflow_waits_are_bounded_unless_the_user_set_them(monkeypatch):
    from lorasoup_core.settings import MLFLOW_HTTP_DEFAULTS, bound_mlflow_waits

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    bound_mlflow_waits()
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == int(MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) < 120
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 5  # the user's setting wins


@pytest.mark.slow
def test_a_tracking_server_that_stops_answering_after_the_preflight_fails_the_request(tmp_path, tarpit):
    """No preflight in the way (a library call, or a server that hangs mid-run): MLflow's own timeout and
    retries end the request with an error naming the server. Short user settings here (the defaults'
    bounds, 10 s x 3 tries, are asserted above): what is tested is that the timeout path ends the call."""
    code = "from lorasoup_core import tracking; import sys; tracking.client(sys.argv[1]).search_experiments()"
    env = _env(tmp_path, MLFLOW_HTTP_REQUEST_TIMEOUT="2", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
               MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
    try:
        proc = subprocess.run([sys.executable, "-c", code, tarpit], env=env, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"still waiting on {tarpit} after 120 s:\n{err.stdout!r}\n{err.stderr!r}")
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode != 0 and tarpit in proc.stderr and "timed out" in proc.stderr.lower(), shown
