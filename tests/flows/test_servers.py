"""The experiment as a deployment on real servers: `prefect server start`, process workers on a CPU and a
GPU work pool, `mlflow server` with S3 artifacts on moto's server; all bound to 127.0.0.1 and stopped here.
The experiment runs with remote=true: its train-pool and compose-and-evaluate subflows are deployments
picked up by the GPU pool's worker, and their results come back through Prefect's result storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO_ROOT, free_port, wait_http
from tests.flows.conftest import start_process, stop_process, tiny_config, write_config

pytestmark = pytest.mark.slow
BIN = os.path.dirname(sys.executable)


def _flow_runs_by_deployment(env) -> dict[str, list[str]]:
    """{deployment name: [work pool of each of its completed flow runs]} read through Prefect's client."""
    code = ("import json; from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c:\n"
            "    deps = {d.id: d.name for d in c.read_deployments()}\n"
            "    print(json.dumps([[deps.get(r.deployment_id), r.work_pool_name, r.state_type.value]\n"
            "                      for r in c.read_flow_runs()]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    runs: dict[str, list[str]] = {}
    for name, pool, state in json.loads(out.stdout.strip().splitlines()[-1]):
        if name and state == "COMPLETED":
            runs.setdefault(name, []).append(pool)
    return runs


def test_deployment_on_real_servers(tmp_path, mlflow_server, s3_bucket, moto_server):
    cfg = tiny_config(tmp_path, name="served-experiment")
    cfg["storage"] = {"uri": f"s3://{s3_bucket}/lorasoup"}
    cfg["tracking"] = {"tracking_uri": mlflow_server}
    cfg["methods"] = ["lorahub", "uniform"]
    cfg["eval"]["baselines"] = ["zero-shot"]
    # what this test checks is where the flows run and what lands where, not the pool: two short trainings
    cfg["pool"]["tasks"] = [t for t in cfg["pool"]["tasks"] if t["name"] in ("add", "count_items")]
    cfg["pool"]["training"]["steps"] = 20
    cfg["selection"]["k"] = 2
    config_path = write_config(tmp_path, cfg)
    prefect_file = tmp_path / "prefect.yaml"
    gpu = {"name": "test-gpu", "job_variables": {}}
    prefect_file.write_text(yaml.safe_dump({"name": "t", "deployments": [
        {"name": "tiny", "entrypoint": "flows/experiment.py:experiment",
         "parameters": {"config": str(config_path), "remote": True},
         "work_pool": {"name": "test-cpu", "job_variables": {}}},
        {"name": "train-pool", "entrypoint": "flows/train_pool.py:train_pool",
         "parameters": {"config": str(config_path)}, "work_pool": gpu},
        {"name": "compose-and-evaluate", "entrypoint": "flows/compose_and_evaluate.py:compose_and_evaluate",
         "parameters": {"config": str(config_path)}, "work_pool": gpu}]}))

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "LORASOUP_HOME": str(tmp_path / "home"),
           # workers poll every second (default 10 s: each of the three flow runs would wait for a poll)
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = open(tmp_path / "servers.log", "wb")
    server = start_process([f"{BIN}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
                           "--no-ui"], env, log)
    workers = []
    try:
        wait_http(f"{api}/health", server, timeout=120)
        out = subprocess.run([f"{BIN}/lorasoup", "deploy", "--prefect-file", str(prefect_file)], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "deployed experiment/tiny" in out.stdout
        workers = [start_process([f"{BIN}/prefect", "worker", "start", "--pool", pool, "--type", "process"], env, log)
                   for pool in ("test-cpu", "test-gpu")]
        run = subprocess.run([f"{BIN}/prefect", "deployment", "run", "experiment/tiny", "--watch",
                              "--watch-timeout", "600"], env=env, capture_output=True, text=True, timeout=660)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:] + (tmp_path / "servers.log").read_text()[-3000:]
        assert "Completed" in run.stdout
        runs = _flow_runs_by_deployment(env)
    finally:
        for p in [*workers, server]:
            stop_process(p)
        log.close()

    # the subflows ran as deployments on the GPU pool, once per target for compose-and-evaluate
    assert runs["train-pool"] == ["test-gpu"] and runs["compose-and-evaluate"] == ["test-gpu"], runs
    assert runs["tiny"] == ["test-cpu"], runs

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("served-experiment")
    parents = client.search_runs([exp.experiment_id], "tags.`lorasoup.kind` = 'experiment'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "score/count_then_add/lorahub" in parents[0].data.metrics
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_server).list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any(k.startswith("lorasoup/adapters/tiny-llama/count_items/") for k in keys)
    assert any(k.startswith("lorasoup/reports/served-experiment/") for k in keys)
    # MLflow's artifacts under the store's prefix (not the server's --artifacts-destination `mlflow/`)
    assert exp.artifact_location == f"s3://{s3_bucket}/lorasoup/mlflow/served-experiment"
    assert parents[0].info.artifact_uri.startswith(f"s3://{s3_bucket}/lorasoup/mlflow/served-experiment/")
    assert any(k.startswith("lorasoup/mlflow/served-experiment/") and k.endswith("results/results.json") for k in keys)
    assert not any(k.startswith("mlflow/") for k in keys)
