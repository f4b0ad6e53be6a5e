"""`lorasoup deploy`: create the work pools `deployments/prefect.yaml` names, then run Prefect's own
`prefect --no-prompt deploy --all` on it from the repository root, so both commands make the same
deployments. `lorasoup deploy --check` validates the file with Prefect's schema and each deployment
against its flow's signature, Prefect's schedule parsing and its work pool's base job template."""

# ruff: noqa: E402 - Prefect is imported after its home is chosen (use_prefect_home)
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml

from lorasoup_core.settings import use_prefect_home

use_prefect_home()  # as the flows do: `lorasoup deploy` and `lorasoup run` share one Prefect home

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"


class DeployError(typer.BadParameter):
    """Invalid definitions: one message naming each broken deployment, exit 2 (as the CLI's other bad inputs)."""

    def __init__(self, message: str):
        super().__init__(message, param_hint="--prefect-file")


@dataclass(frozen=True)
class PoolSpec:
    name: str
    type: str
    base_job_template: Path | None = None  # None: the type's default, as `prefect work-pool create` takes it


@dataclass
class CheckedDeployment:
    name: str
    flow_name: str
    entrypoint: str
    work_pool: str
    pool_type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    job_variables: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)  # Prefect's schedule objects


def _where(path: Path, i: int, config: dict[str, Any]) -> str:
    return f"{path}: deployments[{i}] ({config.get('name') or '?'})"


def load(path: str | Path = PREFECT_FILE) -> tuple[list[dict[str, Any]], dict[str, PoolSpec]]:
    """(deployment configs as `prefect deploy` sees them, declared work pools) from a prefect.yaml.
    Prefect's deploy skips a file its schema rejects, with a warning; here that is an error."""
    from prefect.cli.deploy._config import (
        _format_validation_error,
        _handle_deprecated_schedule_fields,
        _merge_with_default_deploy_config,
    )
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.utilities.templating import apply_values
    from pydantic import ValidationError

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DeployError(f"{path}: {err}") from None
    if not isinstance(raw, dict):
        raise DeployError(f"{path}: not a mapping")
    try:
        model = PrefectYamlModel.model_validate(raw)
    except ValidationError as err:
        raise DeployError(f"{path}: {_format_validation_error(err, raw)}") from None
    configs = []
    for d in model.deployments:
        config = _merge_with_default_deploy_config(d.model_dump(exclude_unset=True, mode="json"))
        # as `prefect deploy` does before it reads the work pool: {{ $ENV }} placeholders resolved
        configs.append(apply_values(_handle_deprecated_schedule_fields(config), os.environ, remove_notset=False))
    if not configs:
        raise DeployError(f"{path}: no deployments defined")
    declared = ((raw.get("definitions") or {}).get("pools")) or {}
    pools = {}
    for name, spec in declared.items():
        if not isinstance(spec, dict) or not spec.get("type"):
            raise DeployError(f"{path}: definitions.pools.{name} needs a `type`")
        template = spec.get("base_job_template")
        pools[name] = PoolSpec(name, spec["type"], path.parent / template if template else None)
    return configs, pools


def _pool_specs(configs: list[dict[str, Any]], declared: dict[str, PoolSpec], pool_type: str) -> list[PoolSpec]:
    names = dict.fromkeys((c.get("work_pool") or {}).get("name") for c in configs)
    return [declared.get(n) or PoolSpec(n, pool_type) for n in names if n]


def _known_template(spec: PoolSpec) -> dict[str, Any] | None:
    """The pool's base job template when known without an API: its file, or an installed worker's default."""
    if spec.base_job_template:
        return json.loads(spec.base_job_template.read_text())
    from prefect.workers.base import BaseWorker

    worker = BaseWorker.get_worker_class_from_type(spec.type)
    return worker.get_default_base_job_template() if worker else None


def _unknown_keys(raw: dict[str, Any], i: int) -> list[str]:
    """Keys `prefect deploy` silently ignores (its models drop extras): typos, or settings in the wrong place."""
    from prefect.cli.deploy._models import DeploymentConfig, WorkPoolConfig

    d = (raw.get("deployments") or [])[i]
    bad = [k for k in d if k not in DeploymentConfig.model_fields]
    if isinstance(d.get("work_pool"), dict):
        bad += [f"work_pool.{k}" for k in d["work_pool"] if k not in WorkPoolConfig.model_fields]
    return bad


def _check_one(config: dict[str, Any], spec: PoolSpec | None, flows: dict[str, Any]) -> CheckedDeployment:
    from prefect.cli.deploy._schedules import _construct_schedules
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.schema_tools import validate as validate_schema
    from rich.console import Console

    from lorasoup_core.experiment import load_experiment, load_pool_file

    pool = (config.get("work_pool") or {}).get("name")
    if not config.get("name") or not config.get("entrypoint") or not pool:
        raise ValueError("`prefect --no-prompt deploy` needs a name, an entrypoint and work_pool.name")
    entrypoint = config["entrypoint"]
    if entrypoint not in flows:  # relative to the repository root, where `prefect deploy` runs
        file, _, name = entrypoint.partition(":")
        flows[entrypoint] = load_flow_from_entrypoint(f"{REPO_ROOT / file}:{name}")
    flow = flows[entrypoint]
    parameters = config.get("parameters") or {}
    flow.validate_parameters(parameters)
    config_file = parameters.get("config")
    if isinstance(config_file, str):  # the pool flows also take pool files; the others need an experiment
        (load_pool_file if "pool" in entrypoint else load_experiment)(REPO_ROOT / config_file)
    schedules = _construct_schedules(config, {}, console=Console(quiet=True), is_interactive=lambda: False)
    job_variables = config["work_pool"].get("job_variables") or {}
    template = _known_template(spec) if spec else None
    if template and job_variables:
        variables = template.get("variables") or {}
        stray = sorted(set(job_variables) - set(variables.get("properties") or {}))
        if stray:
            raise ValueError(f"job_variables {stray} are not variables of the {spec.type} work pool's base job "
                             "template: its worker would drop them")
        # the check the Prefect server runs when the deployment is created
        validate_schema(job_variables, variables, raise_on_error=True, preprocess=True, ignore_required=True,
                        allow_none_with_default=True)
    return CheckedDeployment(config["name"], flow.name, entrypoint, pool, spec.type if spec else "?", parameters,
                             job_variables, schedules)


def validate(path: str | Path = PREFECT_FILE, pool_type: str = "process") -> list[CheckedDeployment]:
    """Check every deployment; one DeployError naming each broken deployment and why."""
    path = Path(path)
    configs, declared = load(path)
    raw = yaml.safe_load(path.read_text())
    specs = {s.name: s for s in _pool_specs(configs, declared, pool_type)}
    checked, errors, flows = [], [], {}
    for i, config in enumerate(configs):
        try:
            if stray := _unknown_keys(raw, i):
                raise ValueError(f"unknown keys {stray} (prefect deploy ignores them)")
            pool = (config.get("work_pool") or {}).get("name")
            checked.append(_check_one(config, specs.get(pool), flows))
        except Exception as err:  # noqa: BLE001 - every broken deployment is reported, not only the first
            errors.append(f"{_where(path, i, config)}: {type(err).__name__}: {err}")
    if errors:
        raise DeployError("\n".join(errors))
    return checked


def ensure_work_pools(specs: list[PoolSpec]) -> list[str]:
    """Create the missing pools as `prefect work-pool create NAME --type T [--base-job-template F]` would;
    returns the names created. An existing pool is left as it is (a differing type is reported)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    created = []
    with get_client(sync_client=True) as client:
        for spec in specs:
            try:
                pool = client.read_work_pool(spec.name)
                if pool.type != spec.type:
                    typer.echo(f"work pool {spec.name!r} exists with type {pool.type!r} (declared "
                               f"{spec.type!r}); left as it is", err=True)
                continue
            except ObjectNotFound:
                pass
            if spec.base_job_template:
                template = json.loads(spec.base_job_template.read_text())
            else:
                template = run_coro_as_sync(get_default_base_job_template_for_infrastructure_type(spec.type))
            if template is None:
                raise DeployError(f"work pool {spec.name!r}: no base job template known for type {spec.type!r}")
            try:
                client.create_work_pool(WorkPoolCreate(name=spec.name, type=spec.type, base_job_template=template))
                created.append(spec.name)
            except ObjectAlreadyExists:  # created meanwhile by someone else
                pass
    return created


def prefect_deploy_command(path: str | Path = PREFECT_FILE, only: list[str] | None = None) -> list[str]:
    """The `prefect deploy` command line `lorasoup deploy` runs (from REPO_ROOT)."""
    select = [a for name in only for a in ("--name", name)] if only else ["--all"]
    return [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *select,
            "--prefect-file", str(Path(path).resolve())]


def _deployed(configs: list[dict[str, Any]]) -> list[str]:
    """'flow/deployment' of each config, read back from the API (so a name printed is a deployment made)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    wanted = {(c["name"], c["entrypoint"]) for c in configs}
    with get_client(sync_client=True) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=sorted({n for n, _ in wanted}))))
        flows = {d.flow_id: client.read_flow(d.flow_id).name for d in found}
    by_key = {(d.name, d.entrypoint): f"{flows[d.flow_id]}/{d.name}" for d in found}
    return [by_key[(c["name"], c["entrypoint"])] for c in configs if (c["name"], c["entrypoint"]) in by_key]


def deploy_all(path: str | Path = PREFECT_FILE, only: list[str] | None = None, pool_type: str = "process") -> list[str]:
    """Create the missing work pools, run `prefect deploy`; returns the 'flow/deployment' names made."""
    path = Path(path)
    configs, declared = load(path)
    if only:
        missing = sorted(set(only) - {c.get("name") for c in configs})
        if missing:
            raise DeployError(f"{path}: no deployments named {', '.join(missing)}")
        configs = [c for c in configs if c.get("name") in only]
    for name in ensure_work_pools(_pool_specs(configs, declared, pool_type)):
        typer.echo(f"created work pool {name}")
    command = prefect_deploy_command(path, only)
    done = subprocess.run(command, cwd=REPO_ROOT)  # Prefect's own output goes to the terminal
    if done.returncode:  # Prefect said why above
        typer.echo(f"`{shlex.join(command[1:])}` (in {REPO_ROOT}) exited {done.returncode}", err=True)
        raise typer.Exit(done.returncode)
    return _deployed(configs)
