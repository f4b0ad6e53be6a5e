"""Shared fixtures: an isolated, offline environment and tiny models for fast tests.

The environment is set at import time, before any library reads it, so tests never touch the
user's home, the network, or a model hub.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="lorasoup-tests-"))
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": str(_SESSION_TMP / "hf"),
        "PREFECT_HOME": str(_SESSION_TMP / "prefect"),
        "LORASOUP_HOME": str(_SESSION_TMP / "lorasoup"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{_SESSION_TMP / 'mlflow.db'}",
    }
)
# Converted real-model weights are reused across runs (not the user's home: the repo's ignored cache).
os.environ.setdefault("LORASOUP_MODEL_CACHE", str(Path(__file__).resolve().parents[1] / ".lorasoup" / "models"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LORASOUP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Data sources read BBH, GSM8K ... from LORASOUP_DATA_DIR when no path is given.
os.environ.setdefault("LORASOUP_DATA_DIR", str(SHARED_DATA))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data beside the repo (BBH, GSM8K, GSM-hard, CodeAlpaca); read in place, never copied."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set LORASOUP_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_llama():
    from lorasoup_core.models import load_model

    return load_model("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def tiny_t5():
    from lorasoup_core.models import load_model

    return load_model("tiny-t5", device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded SmolLM2-135M-Instruct (first load converts the GGUF once, ~25 s)."""
    from lorasoup_core.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 API (moto's server) on 127.0.0.1; yields its endpoint URL and sets the S3 env for s3fs,
    boto3 and MLflow for the rest of the session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LORASOUP_S3_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh bucket on the moto server; yields its name."""
    import uuid

    import boto3

    name = f"lorasoup-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=name)
    return name


# Skills the tiny pool is trained on; the composed targets below need two of them.
TINY_POOL_SKILLS = ["add", "boolean", "brackets", "compare", "count_items", "date_add", "double", "first_item",
                    "reverse_list", "sort_words", "uppercase"]


@pytest.fixture(scope="session")
def tiny_pool(tiny_llama):
    """{skill: PEFT adapter dir} trained on tiny-llama for the upstream skills (shared by the session)."""
    from lorasoup_core.adapters import TrainingConfig, train_lora
    from lorasoup_core.data import load_task

    out = {}
    cfg = TrainingConfig(steps=100, lr=1e-2, batch_size=16, max_validation=16)
    for skill in TINY_POOL_SKILLS:
        task = load_task({"source": "skills", "name": skill, "n_train": 200, "n_validation": 16, "n_test": 16})
        path = _SESSION_TMP / "tiny_pool" / skill
        train_lora(tiny_llama, task, cfg, path, progress=False, embed_examples=32)
        out[skill] = path
    return out


@pytest.fixture
def mlflow_server(tmp_path, s3_bucket):
    """A real `mlflow server` on 127.0.0.1 whose artifacts go to S3 on the moto server."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", f"s3://{s3_bucket}/mlflow"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until `url` answers, failing early (with its stderr) if `proc` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise RuntimeError(f"{proc.args[:4]} exited: {err}") from None
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout} s")
