"""Against a real `prefect server` (127.0.0.1, a PREFECT_HOME of its own, stopped here):
- `lorasoup deploy` creates the work pools, and the same deployments as `prefect deploy --all`;
- an experiment's remote subflows are submitted together and waited for together, results in order,
  a failed one named (flows.experiment._remote_runs with a process worker).

Top-level imports stay light: the worker's flow-run processes import this file for `cell`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect import flow

from tests.flows.conftest import start_process, stop_process

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@flow(name="cell", persist_result=True)  # results persist: the caller reads them back
def cell(target_index: int, seed: int = 0, fail: bool = False) -> int:
    time.sleep(1)
    if fail:
        raise RuntimeError(f"cell {target_index} broke")
    return 10 * target_index + seed


@flow(name="fan-out")
def fan_out(runs: list[dict]) -> list[int]:
    from flows.experiment import _remote_runs

    return _remote_runs("cell/cell", runs, poll_s=0.5)


class Server:
    def __init__(self, api: str, env: dict, log: Path):
        self.api, self.env, self.log = api, env, log

    def tail(self) -> str:
        return "\n--- server and worker log ---\n" + self.log.read_text()[-4000:]

    def run(self, args, cwd=REPO, timeout=300):
        """A command against this server; its output comes back in the assertion message when it fails."""
        out = subprocess.run(args, env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"{args[:4]} exited {out.returncode}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        return out

    @contextmanager
    def client(self):
        """Prefect's sync client on this server, from this process."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api}), get_client(sync_client=True) as client:
            yield client


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import free_port, wait_http

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": api,
           "LORASOUP_HOME": str(home / "lorasoup"), "LORASOUP_REPO": "/srv/lorasoup",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        proc = start_process([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                              "--no-ui"], env, log, cwd=REPO)
        served = Server(api, env, log_path)
        try:
            try:
                wait_http(f"{api}/health", proc, timeout=180)
            except RuntimeError as err:
                pytest.fail(f"{err}{served.tail()}")
            yield served
        finally:
            stop_process(proc)


def _snapshot(client) -> dict[str, dict]:
    """What a deployment is, without ids and timestamps: {'flow/name': fields}."""
    out = {}
    for d in client.read_deployments():
        flow_name = client.read_flow(d.flow_id).name
        out[f"{flow_name}/{d.name}"] = {
            "entrypoint": d.entrypoint, "work_pool": d.work_pool_name, "work_queue": d.work_queue_name,
            "parameters": d.parameters, "job_variables": d.job_variables, "tags": sorted(d.tags),
            "schedules": [(s.schedule.model_dump(), s.active, s.parameters) for s in d.schedules],
            "pull_steps": d.pull_steps, "description": d.description, "paused": d.paused,
            "enforce_parameter_schema": d.enforce_parameter_schema,
            "parameter_schema": d.parameter_openapi_schema,
        }
    return out


def test_lorasoup_deploy_makes_what_prefect_deploy_makes(server, tmp_path):
    from tests.flows.test_deployments import EXPECTED

    # from anywhere: lorasoup runs Prefect's deploy from the repository root itself
    out = server.run([str(BIN / "lorasoup"), "deploy"], cwd=tmp_path)
    for name, (flow_name, _, _) in EXPECTED.items():
        assert f"deployed {flow_name}/{name}" in out.stdout, out.stdout[-3000:]
    for pool in ("lorasoup-cpu", "lorasoup-gpu", "lorasoup-gpu-docker", "lorasoup-gpu-kubernetes"):
        assert f"created work pool {pool}" in out.stdout
    with server.client() as client:
        ours = _snapshot(client)
        pools = {p.name: p for p in client.read_work_pools()}
        for d in client.read_deployments():
            client.delete_deployment(d.id)
        assert not client.read_deployments()

    assert {n: p.type for n, p in pools.items()} == {
        "lorasoup-cpu": "process", "lorasoup-gpu": "process", "lorasoup-gpu-docker": "docker",
        "lorasoup-gpu-kubernetes": "kubernetes"}
    assert "container_create_kwargs" in pools["lorasoup-gpu-docker"].base_job_template["variables"]["properties"]
    assert "gpu_limit" in pools["lorasoup-gpu-kubernetes"].base_job_template["variables"]["properties"]

    # Prefect's own command, on the pools lorasoup created
    server.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"])
    with server.client() as client:
        theirs = _snapshot(client)

    assert sorted(ours) == sorted(f"{f}/{n}" for n, (f, _, _) in EXPECTED.items())
    assert ours == theirs
    # the work queue, the GPU request and $LORASOUP_REPO (the processes' checkout; not the containers')
    cd = "prefect.deployments.steps.set_working_directory"
    assert ours["train-pool/train-pool"]["pull_steps"] == [{cd: {"directory": "/srv/lorasoup"}}]
    docker = ours["train-pool/train-pool-docker"]
    assert docker["pull_steps"] == [{cd: {"directory": "/opt/lorasoup"}}] and docker["work_queue"] == "default"
    assert docker["job_variables"]["container_create_kwargs"]["device_requests"][0]["count"] == -1
    assert ours["retrain-pool/retrain-pool-nightly"]["schedules"][0][0]["cron"] == "0 3 * * *"


def test_remote_runs_go_together_and_come_back_in_order(server):
    from prefect import Flow

    from flows.deploy import PoolSpec, ensure_work_pools

    with server.client():  # the pool and the deployment first: a worker would create its pool itself
        assert ensure_work_pools([PoolSpec("test-remote", "process")]) == ["test-remote"]
        deployment_id = Flow.from_source(str(REPO), "tests/flows/test_deploy_server.py:cell").deploy(
            "cell", work_pool_name="test-remote", build=False, push=False, print_next_steps=False)
    log = open(server.log, "ab")
    worker = start_process([str(BIN / "prefect"), "worker", "start", "--pool", "test-remote"], server.env, log, cwd=REPO)
    try:
        with server.client():
            results = fan_out([{"target_index": i} for i in range(3)])
            with pytest.raises(RuntimeError) as failed:
                fan_out([{"target_index": 0, "seed": 1}, {"target_index": 1, "seed": 1, "fail": True}])
        with server.client() as client:
            runs = [r for r in client.read_flow_runs() if r.deployment_id == deployment_id]
    except BaseException as err:
        raise AssertionError(f"{err!r}{server.tail()}") from err
    finally:
        stop_process(worker)
        log.close()

    assert results == [0, 10, 20]  # in the order given, whatever order they finished in
    message = str(failed.value)
    assert "cell/cell: 1 of 2 runs did not complete" in message and "(target_index=1, seed=1) Failed" in message
    assert "cell 1 broke" in message and "target_index=0" not in message
    # concurrent: every run of a call was created before the first of them ended (one at a time, the second
    # would be created only after the first ended)
    first = [r for r in runs if "seed" not in r.parameters]
    assert len(first) == 3 and all(r.state.is_completed() for r in first)
    assert max(r.created for r in first) < min(r.end_time for r in first)
    assert len(runs) == 5 and all(r.parent_task_run_id for r in runs)  # subflows of the caller, as before
