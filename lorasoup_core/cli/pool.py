"""`lorasoup pool`: train, import and list the adapters registered in MLflow."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from lorasoup_core.cli._options import DTYPE, model_config
from lorasoup_core.cli._output import JSON, emit_rows

app = typer.Typer(help="The adapter pool in the MLflow registry.", no_args_is_help=True)

COLUMNS = ("name", "version", "task", "base", "rank", "origin", "aliases", "val_loss", "uri")
STORE = typer.Option(None, "--store", "--uri", help="Artifact store root URI (default LORASOUP_STORE).")


class Origin(StrEnum):
    trained = "trained"
    imported = "imported"
    composed = "composed"


def preflight(store: str | None, tracking_uri: str | None, *, store_source: str = "LORASOUP_STORE",
              tracking_source: str = "MLFLOW_TRACKING_URI", check_store: bool = True) -> None:
    """Before any work: the store (unless `check_store` is False) and the tracking server this command
    will use answer within the preflight's 5 s, else one line naming them and exit 2. None: the
    environment's default."""
    from lorasoup_core.services import ServicesUnreachable, check_uris
    from lorasoup_core.settings import get_settings

    settings = get_settings()
    try:
        check_uris((store or settings.store_uri) if check_store else None, tracking_uri or settings.tracking_uri,
                   store_source=store_source, tracking_source=tracking_source)
    except ServicesUnreachable as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def config_services(config: str | Path, overrides: list[str] | None = None, experiment_only: bool = False):
    """(storage, tracking, named) of a pool or experiment YAML, with `overrides`: its `storage` and
    `tracking` sections, read without the imports the full load needs (torch: seconds). With
    `experiment_only`, a pool YAML's are the environment's defaults (named False). None when the file or
    the sections do not validate: the full load reports why."""
    from lorasoup_core.config import ConfigError, StorageConfig, TrackingConfig, apply_overrides, read_yaml

    try:
        data = read_yaml(config)
        if not isinstance(data, dict):
            return None
        if experiment_only and "targets" not in data:
            return StorageConfig(), TrackingConfig(), False
        data = apply_overrides(data, overrides, str(config)) if overrides else data
        return (StorageConfig.model_validate(data.get("storage") or {}),
                TrackingConfig.model_validate(data.get("tracking") or {}), True)
    except (ConfigError, ValueError, AttributeError):
        return None


def preflight_config(config: str | Path | None, experiment_only: bool = False) -> None:
    """`preflight` for the store and tracking server a YAML config names (see `config_services`; no
    config: the environment's), before the heavy imports of its full load."""
    from lorasoup_core.config import StorageConfig, TrackingConfig
    from lorasoup_core.registry.registry import use_storage

    sections = config_services(config, experiment_only=experiment_only) if config else \
        (StorageConfig(), TrackingConfig(), False)
    if sections is None:
        return
    storage, tracking, named = sections
    use_storage(storage)  # the config's S3 endpoint, for the probe too
    preflight(storage.uri, tracking.tracking_uri,
              store_source=f"{config}: storage.uri" if named and storage.uri else "LORASOUP_STORE",
              tracking_source=f"{config}: tracking.tracking_uri" if named and tracking.tracking_uri
              else "MLFLOW_TRACKING_URI")


def _registry(tracking_uri: str | None, store: str | None):
    from lorasoup_core.config import StorageConfig
    from lorasoup_core.registry import open_registry

    return open_registry(StorageConfig(uri=store), tracking_uri)


@app.command("list")
def list_cmd(task: str = typer.Option(None, help="Only adapters for this task."),
             base: str = typer.Option(None, help="Only adapters for this base model spec (e.g. smollm2-135m)."),
             rank: int = typer.Option(None, help="Only adapters of this LoRA rank."),
             origin: Origin = typer.Option(None, help="Only adapters of this origin."),
             tracking_uri: str = typer.Option(None, help="MLflow tracking/registry URI (default MLFLOW_TRACKING_URI)."),
             as_json: bool = JSON,
             ) -> None:
    """Registered adapter versions: name, version, task, base model, rank, origin, aliases, val_loss, store URI."""
    preflight(None, tracking_uri, tracking_source="--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI",
              check_store=False)  # listing reads the registry only
    versions = _registry(tracking_uri, None).list(task=task, base_model=base, rank=rank,
                                                  origin=origin.value if origin else None)
    rows = [(v.name, v.version, v.task, v.base_model, v.rank, v.origin, ",".join(v.aliases), v.metrics.get("val_loss"),
             v.store_uri) for v in versions]
    emit_rows(COLUMNS, rows, as_json, empty="no registered adapters match")


@app.command("train")
def train_cmd(config: Path = typer.Option(..., "--config", "-c", help="Pool YAML (configs/pool_skills.yaml) or an "
                                          "experiment YAML, whose `pool` section is used."),
              progress: bool = typer.Option(True, help="Show training progress bars."),
              ) -> None:
    """Train and register one adapter per task; tasks already registered with the same base, data and
    training config are skipped."""
    preflight_config(config)
    from lorasoup_core.config import ConfigError
    from lorasoup_core.experiment import load_pool_file
    from lorasoup_core.models.cache import shared_model
    from lorasoup_core.pool import ensure_pool
    from lorasoup_core.registry import open_registry
    from lorasoup_core.tracking import RunContext

    try:
        cfg = load_pool_file(config)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None
    registry = open_registry(cfg.storage, cfg.tracking.tracking_uri)
    run = RunContext(cfg.experiment_name, cfg.tracking.tracking_uri, store_uri=cfg.storage.uri)
    result = ensure_pool(cfg.pool, shared_model(cfg.model), registry, run, progress=progress)
    for task, v in result.versions.items():
        typer.echo(f"{task}: {v.ref} ({'trained' if task in result.trained else 'already registered'})")
    typer.echo(f"trained {len(result.trained)}, skipped {len(result.skipped)}")


@app.command("import")
def import_cmd(sources: list[str] = typer.Argument(..., help="PEFT LoRA directories, hub ids (owner/name, online "
                                                   "or cached) or lorahub:flan-t5-large (LoraHub's pool, online)."),
               model: str = typer.Option(..., "--model", "-m", help="Base model spec the adapters are for."),
               device: str = typer.Option("cpu", "--device", help="Device for loading the base model for the "
                                          "shape checks: cpu (default), auto, cuda, cuda:N or mps."),
               dtype: str = DTYPE,
               store: str = STORE,
               tracking_uri: str = typer.Option(None, help="MLflow tracking/registry URI (default MLFLOW_TRACKING_URI)."),
               ) -> None:
    """Check existing LoRA adapters against the base model and register those that fit.

    Exits with code 1 when any adapter was rejected (the others are still registered)."""
    from lorasoup_core.models import ModelSpecError, load_model
    from lorasoup_core.pool import import_adapters

    chosen = model_config(model, device, dtype)
    model, device, dtype = chosen.spec, chosen.device, chosen.dtype
    preflight(store, tracking_uri, store_source="--store" if store else "LORASOUP_STORE",
              tracking_source="--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI")
    try:
        base = load_model(model, device=device, dtype=dtype)
    except ModelSpecError as err:
        raise typer.BadParameter(str(err), param_hint="--model") from None
    report = import_adapters(sources, base, _registry(tracking_uri, store))
    for src, v in report.ok.items():
        typer.echo(f"{'already registered' if src in report.resumed else 'registered'} {src} -> {v.ref}")
        for w in report.warnings.get(src, []):
            typer.echo(f"  warning: {w}")
    for why in report.rejected.values():
        typer.echo(f"rejected: {why}", err=True)
    typer.echo(f"imported {len(report.ok)}, rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)
