"""Train the pool: one registered adapter per (base model, task data, training config).

The registry is the cache: an adapter whose three fingerprints are already registered is not
trained again, so running a pool twice trains nothing and changing one task's data retrains only
that task (what scheduled retraining relies on). Each training is an MLflow run (params, the loss
curve, validation metrics) that the registered version points to.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric

from lorasoup_core import tracking
from lorasoup_core.adapters import TrainingConfig, train_lora
from lorasoup_core.data import Task, load_task
from lorasoup_core.models import LoadedModel, load_model
from lorasoup_core.pool.config import DEFAULT_EXPERIMENT, PoolConfig
from lorasoup_core.registry import AdapterRegistry, AdapterVersion
from lorasoup_core.settings import get_settings
from lorasoup_core.storage import open_store


@dataclass
class PoolReport:
    versions: dict[str, AdapterVersion] = field(default_factory=dict)  # task -> its registered version
    trained: list[str] = field(default_factory=list)  # tasks trained (and registered) by this run
    skipped: list[str] = field(default_factory=list)  # tasks whose adapter was already registered


def _parent_run(registry: AdapterRegistry) -> str | None:
    """The fluent MLflow run active in this process, when it lives on the registry's tracking server."""
    import mlflow

    run = mlflow.active_run()
    if run is None or mlflow.get_tracking_uri() != registry.client.tracking_uri:
        return None
    return run.info.run_id


def _log_training(run_id: str, card, tracking_uri: str) -> None:
    """The loss curve as `train_loss` per optimizer step, the other metrics at the last step."""
    steps = int(card.metrics.get("steps", len(card.loss_curve)) or 1)
    curve = card.loss_curve
    if curve:
        stride = max(1, -(-steps // len(curve)))  # train_lora keeps every stride-th step's loss
        c = tracking.client(tracking_uri)
        now = int(time.time() * 1000)
        items = [Metric("train_loss", float(v), now, i * stride + 1) for i, v in enumerate(curve)]
        for i in range(0, len(items), 1000):
            c.log_batch(run_id, metrics=items[i: i + 1000])
    final = {k: v for k, v in card.metrics.items() if k != "train_loss" or not curve}
    tracking.log_metrics(run_id, final, step=steps, tracking_uri=tracking_uri)


def ensure_adapter(base: LoadedModel, task: Task, config: TrainingConfig, registry: AdapterRegistry, *,
                   experiment: str = DEFAULT_EXPERIMENT, parent_run_id: str | None = None,
                   embed_examples: int = 64, progress: bool = True) -> tuple[AdapterVersion, bool]:
    """The registered adapter for (base, task data, config): found, or trained, registered and returned.

    Returns (version, trained). `champion` moves to a new version only when its val_loss improves on
    the current champion's; `latest` is always the newest version.
    """
    existing = registry.find(base.fingerprint, task.fingerprint, config.fingerprint)
    if existing is not None:
        return existing, False
    uri = registry.client.tracking_uri
    parent_run_id = parent_run_id or _parent_run(registry)
    work = get_settings().home / "work" / "pool"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=f"{task.name[:40]}-") as tmp, \
            tracking.run(experiment, f"train {task.name}", parent_run_id=parent_run_id, tracking_uri=uri,
                         tags={"lorasoup.step": "train", "lorasoup.task": task.name,
                               "lorasoup.base_model": base.spec}) as run_id:
        tracking.log_params(run_id, {"task": task.name, "base_model": base.spec,
                                     "base_fingerprint": base.fingerprint, "data_fingerprint": task.fingerprint,
                                     "config_fingerprint": config.fingerprint, "n_train": len(task.train),
                                     **config.model_dump(mode="json")}, uri)
        out = Path(tmp) / "adapter"
        card = train_lora(base, task, config, out, progress=progress, embed_examples=embed_examples)
        _log_training(run_id, card, uri)
        version = registry.register(card, out, run_id=run_id)
    registry.set_champion_if_better(version)
    return registry.get(version.ref), True


def registry_for(cfg: PoolConfig) -> AdapterRegistry:
    """The registry the config names (tracking URI, artifact store, S3 endpoint)."""
    if cfg.storage.s3_endpoint_url:  # s3fs (the store) and MLflow read the endpoint from the environment
        os.environ["LORASOUP_S3_ENDPOINT_URL"] = cfg.storage.s3_endpoint_url
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", cfg.storage.s3_endpoint_url)
    return AdapterRegistry(tracking_uri=cfg.tracking.tracking_uri, store=open_store(cfg.storage.uri))


def train_pool(pool_cfg: PoolConfig, registry: AdapterRegistry | None = None, base: LoadedModel | None = None, *,
               progress: bool = True) -> PoolReport:
    """Make sure every task of the pool has a registered adapter; train only the missing ones.

    All task data is loaded and checked before anything trains, so a bad file fails fast.
    """
    registry = registry or registry_for(pool_cfg)
    base = base or load_model(pool_cfg.model.spec, device=pool_cfg.model.device, dtype=pool_cfg.model.dtype)
    tasks = [load_task(spec) for spec in pool_cfg.tasks]
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"pool lists task(s) {', '.join(dupes)} more than once; one adapter per task")
    unknown = sorted(set(pool_cfg.overrides) - set(names))
    if unknown:
        raise ValueError(f"overrides name task(s) not in the pool: {', '.join(unknown)}; pool: {', '.join(names)}")
    trainings = [pool_cfg.training_for(t.name) for t in tasks]  # every override is validated before training
    report = PoolReport()
    for task, training in zip(tasks, trainings, strict=True):
        version, trained = ensure_adapter(base, task, training, registry,
                                          experiment=pool_cfg.experiment_name,
                                          embed_examples=pool_cfg.embed_examples, progress=progress)
        report.versions[task.name] = version
        (report.trained if trained else report.skipped).append(task.name)
    return report

