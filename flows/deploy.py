"""Create the work pools and deployments of `deployments/prefect.yaml` on the configured Prefect API."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"


@dataclass
class DeploymentSpec:
    name: str
    entrypoint: str  # "flows/x.py:flow"
    work_pool: str
    parameters: dict[str, Any] = field(default_factory=dict)
    job_variables: dict[str, Any] = field(default_factory=dict)
    cron: list[tuple[str, str]] = field(default_factory=list)  # (cron, timezone)
    tags: list[str] = field(default_factory=list)
    description: str = ""


def read_specs(path: str | Path = PREFECT_FILE) -> tuple[dict[str, dict[str, Any]], list[DeploymentSpec]]:
    """(work pools by name, deployments) from a prefect.yaml; errors name the file and the entry."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text())
    pools: dict[str, dict[str, Any]] = {}
    specs = []
    for i, d in enumerate(doc.get("deployments") or []):
        where = f"{path}: deployments[{i}] ({d.get('name', '?')})"
        try:
            pool = d["work_pool"]
            spec = DeploymentSpec(
                name=d["name"], entrypoint=d["entrypoint"], work_pool=pool["name"],
                parameters=d.get("parameters") or {}, job_variables=pool.get("job_variables") or {},
                cron=[(s["cron"], s.get("timezone", "UTC")) for s in d.get("schedules") or []],
                tags=d.get("tags") or [], description=d.get("description", ""),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"{where}: missing or malformed field {err}") from None
        pools[spec.work_pool] = pool
        specs.append(spec)
    if not specs:
        raise ValueError(f"{path}: no deployments defined")
    return pools, specs


def load_flow(spec: DeploymentSpec):
    from prefect.flows import load_flow_from_entrypoint

    file, _, name = spec.entrypoint.partition(":")
    return load_flow_from_entrypoint(f"{REPO_ROOT / file}:{name}")


def validate(path: str | Path = PREFECT_FILE) -> list[DeploymentSpec]:
    """Every entrypoint loads, its parameters validate against the flow, config files validate."""
    from lorasoup_core.experiment import load_experiment
    from lorasoup_core.pool import load_pool_file

    _, specs = read_specs(path)
    for spec in specs:
        flow = load_flow(spec)
        flow.validate_parameters(spec.parameters)
        config = spec.parameters.get("config")
        if isinstance(config, str):  # the pool flows also take pool files; the others need an experiment
            (load_pool_file if "pool" in spec.entrypoint else load_experiment)(REPO_ROOT / config)
    return specs


def ensure_work_pool(name: str, pool_type: str = "process") -> bool:
    """Create the work pool when missing; True when created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return True
        except ObjectAlreadyExists:
            return False


def deploy_all(path: str | Path = PREFECT_FILE, only: list[str] | None = None, source: str | Path = REPO_ROOT,
               pool_type: str = "process") -> list[str]:
    """Create pools and deployments; returns 'flow/deployment' names."""
    from prefect import Flow
    from prefect.client.schemas.schedules import CronSchedule

    pools, specs = read_specs(path)
    for name in pools:
        ensure_work_pool(name, pool_type)
    created = []
    for spec in specs:
        if only and spec.name not in only:
            continue
        flow = Flow.from_source(source=str(source), entrypoint=spec.entrypoint)
        schedules = [CronSchedule(cron=c, timezone=tz) for c, tz in spec.cron] or None
        flow.deploy(
            name=spec.name, work_pool_name=spec.work_pool, parameters=spec.parameters,
            job_variables=spec.job_variables, schedules=schedules, tags=spec.tags,
            description=spec.description, build=False, push=False, print_next_steps=False,
        )
        created.append(f"{flow.name}/{spec.name}")
    return created
