"""`lorasoup run --config` refuses config mistakes before Prefect starts and before any training: exit 2
and one line per mistake naming the bad value (they used to fail after the pool was trained, or never)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.flows.conftest import tiny_config, write_config


def _run(config: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, str, str]:
    """`lorasoup run --config`; the result, its output for an assertion message, and its stderr unwrapped."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "COLUMNS": "300", "OMP_NUM_THREADS": "1",
           **env}
    proc = subprocess.run([str(Path(sys.executable).parent / "lorasoup"), "run", "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=300)
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc, shown, " ".join(proc.stderr.replace("│", " ").split())  # typer's panel wraps and frames lines


def _nothing_started(tmp_path: Path, shown: str) -> None:
    assert not (tmp_path / "prefect-home").exists(), "Prefect started\n" + shown
    assert not (tmp_path / "store").exists(), "something was trained or published\n" + shown


def test_run_refuses_unknown_names_in_the_config(tmp_path):
    cfg = tiny_config(tmp_path, targets=[{"task": "skills:count_then_addd", "shots": 5}],
                      selection={"filters": ["embeding"], "k": 4}, compose={"lorahub": {"optimizer": "NGOptt"}})
    cfg["model"]["device"] = "gpu0"
    cfg["pool"]["overrides"] = {"count_item": {"steps": 5}}
    proc, shown, err = _run(write_config(tmp_path, cfg), tmp_path)
    assert proc.returncode == 2, shown
    for line in ("targets.0.task: Value error, unknown skills task 'count_then_addd'; known: add,",
                 "selection.filters: Value error, unknown candidate filter 'embeding'; known: arrow, compatible, embedding",
                 "unknown nevergrad optimizer 'NGOptt'; did you mean NGOpt",
                 "model: Value error, device 'gpu0': expected auto, cpu, cuda, cuda:N (e.g. cuda:1) or mps",
                 "overrides name task(s) not in the pool: count_item; pool: add, count_items"):
        assert line in err, f"missing {line!r}\n{shown}"
    assert "Traceback" not in proc.stderr, shown
    _nothing_started(tmp_path, shown)


def test_run_refuses_an_empty_target_list(tmp_path):
    proc, shown, err = _run(write_config(tmp_path, tiny_config(tmp_path, targets=[])), tmp_path)
    assert proc.returncode == 2 and "targets: Value error, no targets: name at least one target task" in err, shown
    _nothing_started(tmp_path, shown)


def test_run_refuses_target_data_this_machine_lacks(tmp_path):
    """A local run composes here: BBH data missing here is refused up front (--remote leaves it to the worker)."""
    (tmp_path / "data").mkdir()
    cfg = tiny_config(tmp_path, targets=[{"task": "bbh:navigate", "shots": 5}])
    proc, shown, err = _run(write_config(tmp_path, cfg), tmp_path, LORASOUP_DATA_DIR=str(tmp_path / "data"))
    assert proc.returncode == 2, shown
    assert "task data (1 problem(s)) targets.0.task:" in err and "data/bbh: not found" in err, shown
    _nothing_started(tmp_path, shown)


def test_run_refuses_a_store_and_tracking_server_that_do_not_answer(tmp_path):
    """A dead S3 endpoint and a dead MLflow server are found before any training, both named in one error
    (they used to surface after the first adapter trained, as retries)."""
    import socket

    ports = []
    for _ in range(2):  # ports nobody listens on
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    cfg = tiny_config(tmp_path)
    cfg["storage"] = {"uri": "s3://team-bucket/lorasoup", "s3_endpoint_url": f"http://127.0.0.1:{ports[0]}"}
    cfg["tracking"] = {**cfg.get("tracking", {}), "tracking_uri": f"http://127.0.0.1:{ports[1]}"}
    proc, shown, err = _run(write_config(tmp_path, cfg), tmp_path, AWS_ACCESS_KEY_ID="test",
                            AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    assert proc.returncode == 2, shown
    assert "2 service(s) not reachable" in err, shown
    assert f"storage.uri: S3 request to http://127.0.0.1:{ports[0]} failed" in err, shown
    assert f"tracking.tracking_uri: MLflow tracking server http://127.0.0.1:{ports[1]} did not answer" in err, shown
    assert "Traceback" not in proc.stderr, shown
    _nothing_started(tmp_path, shown)
