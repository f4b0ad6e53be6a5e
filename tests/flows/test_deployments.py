"""deployments/prefect.yaml passes `lorasoup deploy --check` (Prefect's schema, each flow's signature, Prefect's
schedule parsing, each work pool's job template), and its GPU job variables render to a GPU request for
docker-py and for a kubernetes job manifest."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from flows import deploy

EXPECTED = {  # deployment -> (flow, work pool, pool type)
    "experiment-demo": ("experiment", "lorasoup-cpu", "process"),
    "train-pool": ("train-pool", "lorasoup-gpu", "process"),
    "compose-and-evaluate": ("compose-and-evaluate", "lorasoup-gpu", "process"),
    "retrain-pool-nightly": ("retrain-pool", "lorasoup-gpu", "process"),
    "train-pool-docker": ("train-pool", "lorasoup-gpu-docker", "docker"),
    "compose-and-evaluate-docker": ("compose-and-evaluate", "lorasoup-gpu-docker", "docker"),
    "train-pool-kubernetes": ("train-pool", "lorasoup-gpu-kubernetes", "kubernetes"),
    "compose-and-evaluate-kubernetes": ("compose-and-evaluate", "lorasoup-gpu-kubernetes", "kubernetes"),
}


@pytest.fixture(scope="module")
def checked():
    return {c.name: c for c in deploy.validate()}


def test_definitions_validate(checked):
    assert {n: (c.flow_name, c.work_pool, c.pool_type) for n, c in checked.items()} == EXPECTED
    nightly = checked["retrain-pool-nightly"].schedules
    assert [(s["schedule"].cron, s["schedule"].timezone, s["active"]) for s in nightly] == [("0 3 * * *", "UTC", True)]
    assert all(not c.schedules for n, c in checked.items() if n != "retrain-pool-nightly")  # one nightly run only


def test_each_remote_variant_runs_the_steps_on_its_gpu_pool(checked):
    """`lorasoup run --remote --variant V` submits deployments that exist, run the right flows, on V's pool."""
    from flows.experiment import REMOTE_VARIANTS, remote_deployments

    pools = {"process": "lorasoup-gpu", "docker": "lorasoup-gpu-docker", "kubernetes": "lorasoup-gpu-kubernetes"}
    assert set(REMOTE_VARIANTS) == set(pools)
    for variant, pool in pools.items():
        for ref, flow in zip(remote_deployments(variant), ("train-pool", "compose-and-evaluate"), strict=True):
            flow_name, name = ref.split("/")
            assert flow_name == flow and checked[name].flow_name == flow, (variant, ref)
            assert checked[name].work_pool == pool and checked[name].pool_type == variant, (variant, ref)
    with pytest.raises(ValueError, match="unknown remote variant 'ecs'; known: process, docker, kubernetes"):
        remote_deployments("ecs")


def _render(template: dict, job_variables: dict) -> dict:
    """The job configuration a worker builds: template defaults, then the deployment's job variables."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if v.get("default") is not None}
    return apply_values(template["job_configuration"], {**defaults, **job_variables})


def test_docker_gpu_variant_requests_all_gpus(checked):
    from docker.types import DeviceRequest

    pools = deploy.load()[1]
    template = json.loads(pools["lorasoup-gpu-docker"].base_job_template.read_text())
    for name in ("train-pool-docker", "compose-and-evaluate-docker"):
        config = _render(template, checked[name].job_variables)
        requests = [DeviceRequest(**r) for r in config["container_create_kwargs"]["device_requests"]]
        # what `docker run --gpus all` sends
        assert [(r.driver, r.count, r.capabilities) for r in requests] == [("nvidia", -1, [["gpu"]])]
        assert config["image"] == "lorasoup:gpu"


def test_kubernetes_gpu_variant_limits_one_gpu(checked):
    pools = deploy.load()[1]
    template = json.loads(pools["lorasoup-gpu-kubernetes"].base_job_template.read_text())
    for name in ("train-pool-kubernetes", "compose-and-evaluate-kubernetes"):
        pod = _render(template, checked[name].job_variables)["job_manifest"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
        assert pod["containers"][0]["image"] == "lorasoup:gpu"
    # the pool's own default asks for a GPU too
    pod = _render(template, {})["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def _write(tmp_path, deployments: list, **top) -> str:
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **top, "deployments": deployments}))
    return path


EXPERIMENT = {"entrypoint": "flows/experiment.py:experiment", "parameters": {"config": "configs/demo.yaml"}}


@pytest.mark.parametrize("bad, message", [
    ({"name": "broken", "entrypoint": "flows/experiment.py:experiment"}, r"needs a name, an entrypoint and work_pool"),
    ({"name": "p", **EXPERIMENT, "parameters": {"config": "configs/demo.yaml", "nope": 1},
      "work_pool": {"name": "x"}}, "nope"),
    ({"name": "typo", **EXPERIMENT, "work_pol": {"name": "x"}}, r"unknown keys \['work_pol'\]"),
    ({"name": "cron", **EXPERIMENT, "work_pool": {"name": "x"}, "schedules": [{"cron": "every day"}]}, "cron"),
    ({"name": "gpus", **EXPERIMENT, "work_pool": {"name": "lorasoup-gpu-docker", "job_variables": {"gpus": "all"}}},
     r"\['gpus'\] are not variables of the docker work pool"),
    ({"name": "env", **EXPERIMENT, "work_pool": {"name": "x", "job_variables": {"env": ["A=1"]}}},
     "Validation failed for field 'env'"),
])
def test_bad_definitions_are_named(tmp_path, bad, message):
    pools = {"lorasoup-gpu-docker": {"type": "docker", "base_job_template": str(deploy.PREFECT_FILE.parent /
                                                                                 "docker-job-template.json")}}
    path = _write(tmp_path, [{"name": "good", **EXPERIMENT, "work_pool": {"name": "x"}}, bad],
                  definitions={"pools": pools})
    with pytest.raises(deploy.DeployError, match=message) as err:
        deploy.validate(path)
    assert f"deployments[1] ({bad['name']})" in err.value.message and "(good)" not in err.value.message


def test_prefect_schema_errors_are_prefects(tmp_path):
    path = _write(tmp_path, [{"name": "x", "tags": {"not": "a list"}, **EXPERIMENT}])
    with pytest.raises(deploy.DeployError, match=r"Invalid fields in deployments:\s+• x: tags"):
        deploy.load(path)


def test_deploy_runs_prefects_own_deploy_from_the_repository():
    command = deploy.prefect_deploy_command()
    assert command[:5] == [sys.executable, "-m", "prefect", "--no-prompt", "deploy"]
    assert command[5:] == ["--all", "--prefect-file", str(deploy.PREFECT_FILE)]
    assert deploy.prefect_deploy_command(only=["a", "b"])[5:9] == ["--name", "a", "--name", "b"]
