"""`lorasoup run`, `lorasoup retrain` and `lorasoup deploy`: the commands that need Prefect.

Registered on the `lorasoup` CLI through the `lorasoup.commands` entry point."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import typer

from lorasoup_core.interrupt import Interrupted, report_stopped, stop_on_sigint


@contextlib.contextmanager
def _interruptible(what: str) -> Iterator[None]:
    """Ctrl-C stops the running steps within one step (see `lorasoup_core.interrupt`) and ends the command
    with one line and exit 130; what finished is cached, so the same command resumes."""
    try:
        with stop_on_sigint():
            yield
    except (KeyboardInterrupt, Interrupted):  # Interrupted: a step stopped before the main thread saw SIGINT
        report_stopped(what, "finished adapters and cells are kept")
        raise typer.Exit(130) from None


class RemoteVariant(StrEnum):
    process = "process"
    docker = "docker"
    kubernetes = "kubernetes"


def _prefect_defaults() -> None:
    """Prefect's ephemeral API migrates a new database at its first start, which can take longer than
    Prefect's 20 s default on 2 busy cores; an explicit setting still wins."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # the temporary server's usage heartbeat needs the internet and collides with its own sqlite writes
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from lorasoup_core.settings import use_prefect_home

    use_prefect_home()  # a separate LORASOUP_HOME gets its own Prefect database and result cache


def _check_config(path: Path, overrides: list[str] | None = None, remote: bool | None = None):
    """Validate the experiment config (with its overrides) before Prefect starts: a bad file is one
    message and exit 2. `remote` False: the steps run here, so the tasks' data must load here too (a GPU
    worker's data is not this machine's to check). The store and tracking server must answer either way."""
    from lorasoup_core.config import ConfigError, read_yaml

    try:
        data = read_yaml(path)  # a missing file or bad YAML is answered before the heavy imports below (~0.5 s)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config/--set") from None
    probed = _check_services_early(path, data, overrides)
    from lorasoup_core.experiment import load_experiment
    from lorasoup_core.experiment.checks import check_task_data
    from lorasoup_core.experiment.preflight import check_services

    try:
        cfg = load_experiment(path, overrides)
        if remote is False:
            check_task_data(cfg, pool=not cfg.pool.dask_address)  # a Dask cluster trains on its own data
        if not probed:
            check_services(cfg)  # this process logs to both, remote or not
        return cfg
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config/--set") from None


def _check_services_early(path: Path, data: object, overrides: list[str] | None) -> bool:
    """The store and tracking server the config names answer (`check_services`), asked before the imports
    of the full load (seconds of torch), so a dead service costs the probe's 5 s, not that plus start-up.
    False when the config's sections do not validate yet: the full load says why, then probes."""
    from lorasoup_core.cli.pool import config_services
    from lorasoup_core.registry.registry import use_storage
    from lorasoup_core.services import ServicesUnreachable, check_uris
    from lorasoup_core.settings import get_settings

    sections = config_services(path, overrides)
    if sections is None:
        return False
    storage, tracking, _ = sections
    use_storage(storage)  # the config's S3 endpoint, for the probe too
    settings = get_settings()
    name = data.get("name") if isinstance(data, dict) else None
    try:
        check_uris(storage.uri or settings.store_uri, tracking.tracking_uri or settings.tracking_uri,
                   store_source="storage.uri", config_name=str(name or path),
                   tracking_source="tracking.tracking_uri" if tracking.tracking_uri else "MLFLOW_TRACKING_URI")
    except ServicesUnreachable as err:
        raise typer.BadParameter(str(err), param_hint="--config/--set") from None
    return True


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML (see configs/)."),
        remote: bool = typer.Option(False, help="Run training/composition as deployments on the GPU work pool."),
        variant: RemoteVariant = typer.Option(RemoteVariant.process, help="With --remote: which GPU deployments "
                                              "of deployments/prefect.yaml run the steps (worker processes, "
                                              "docker or kubernetes)."),
        overrides: list[str] = typer.Option(None, "--set", help="KEY=VALUE over the config (dotted KEY, YAML "
                                            "VALUE), e.g. --set seeds=[0] --set eval.limit=20; repeatable."),
    ) -> None:
        """Run the end-to-end experiment: pool, compose for each target, evaluate, report."""
        if variant != RemoteVariant.process and not remote:
            raise typer.BadParameter(f"--variant {variant.value} needs --remote", param_hint="--variant")
        cfg = _check_config(config, overrides, remote)
        _prefect_defaults()
        from flows._server import prefect_api
        from flows.experiment import experiment

        with _interruptible(f"experiment {cfg.name!r}"), prefect_api():
            # with overrides the flow gets the resolved config; cached cells depend on what they compute
            result = experiment(config=cfg.model_dump(mode="json") if overrides else str(config), remote=remote,
                                variant=variant.value)
        typer.echo(result.table)
        typer.echo(f"\nMLflow run {result.run_id} in experiment {result.experiment!r} at {result.tracking_uri}")
        typer.echo(f"report: {result.report_uri}")

    @app.command("retrain")
    def retrain(
        config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML whose pool is retrained."),
    ) -> None:
        """Retrain adapters whose data or config changed and re-run dependent experiments."""
        _check_config(config)
        _prefect_defaults()
        from flows._server import prefect_api
        from flows.retrain_pool import retrain_pool

        with _interruptible("retrain"), prefect_api():
            result = retrain_pool(config=str(config))
        typer.echo(f"trained {len(result.trained)}: {', '.join(result.trained) or '-'}; unchanged {len(result.skipped)}")
        for path in result.rerun:
            typer.echo(f"re-ran {path}")

    @app.command("deploy")
    def deploy(
        prefect_file: Path = typer.Option(None, help="Deployment definitions (default deployments/prefect.yaml)."),
        only: list[str] = typer.Option(None, "--only", help="Deploy only these deployment names."),
        pool_type: str = typer.Option("process", help="Type for work pools that do not exist yet."),
        check: bool = typer.Option(False, "--check", help="Validate the definitions; create nothing."),
    ) -> None:
        """Create the CPU/GPU work pools and the deployments on the Prefect API ($PREFECT_API_URL)."""
        from flows import deploy as d

        path = prefect_file or d.PREFECT_FILE
        if check:
            specs = d.validate(path)
            typer.echo(f"{path}: {len(specs)} deployments valid")
            return
        for name in d.deploy_all(path, only=only, pool_type=pool_type):
            typer.echo(f"deployed {name}")
