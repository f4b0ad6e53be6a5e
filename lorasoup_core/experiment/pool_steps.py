"""Pool steps: fingerprint a task, find its adapter, train it, register it.

Training writes into a local work directory named by the fingerprints and marks it complete by
writing the card last, so a run killed after training but before registering reuses the result.
"""

from __future__ import annotations

import shutil
from typing import Any

from lorasoup_core import tracking
from lorasoup_core.adapters import CARD_FILE, AdapterCard, TrainingConfig, train_lora
from lorasoup_core.config import ModelConfig
from lorasoup_core.data import Task
from lorasoup_core.experiment.steps import shared_base, work_dir
from lorasoup_core.registry import AdapterRegistry, AdapterVersion
from lorasoup_core.storage import open_store


def registry(storage_uri: str | None, tracking_uri: str | None) -> AdapterRegistry:
    return AdapterRegistry(tracking_uri=tracking_uri, store=open_store(storage_uri))


def training_for(task_name: str, training: TrainingConfig, overrides: dict[str, dict[str, Any]]) -> TrainingConfig:
    """The pool's training config with this task's overrides applied (validated)."""
    if task_name not in overrides:
        return training
    return TrainingConfig.model_validate({**training.model_dump(), **overrides[task_name]})


def fingerprints(model: ModelConfig, task: Task, training: TrainingConfig) -> dict[str, str]:
    base = shared_base(model)
    return {"base_fingerprint": base.fingerprint, "data_fingerprint": task.fingerprint,
            "config_fingerprint": training.fingerprint}


def version_dict(v: AdapterVersion) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(v)


def find(reg: AdapterRegistry, fps: dict[str, str]) -> dict[str, Any] | None:
    v = reg.find(fps["base_fingerprint"], fps["data_fingerprint"], fps["config_fingerprint"])
    return version_dict(v) if v else None


def train(model: ModelConfig, task: Task, training: TrainingConfig, *, experiment: str,
          parent_run_id: str | None, tracking_uri: str | None, embed_examples: int = 64,
          progress: bool = True) -> tuple[str, str]:
    """Train (or reuse a finished local training of) the task's adapter; returns (local dir, MLflow run id)."""
    base = shared_base(model)
    key = f"{base.fingerprint[:12]}/{task.name}-{task.fingerprint[:12]}-{training.fingerprint[:12]}"
    out = work_dir("trained", *key.split("/"))
    with tracking.run(experiment, f"train {task.name}", parent_run_id=parent_run_id, tracking_uri=tracking_uri,
                      tags={"lorasoup.step": "train", "lorasoup.task": task.name}) as run_id:
        tracking.log_params(run_id, {"task": task.name, "base_model": base.spec, **training.model_dump(mode="json")},
                            tracking_uri)
        if (out / CARD_FILE).is_file():
            card = AdapterCard.read(out)
            tracking.set_tags(run_id, {"lorasoup.reused_local_training": "true"}, tracking_uri)
        else:
            shutil.rmtree(out, ignore_errors=True)
            staging = out.with_name(out.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            train_lora(base, task, training, staging, progress=progress, embed_examples=embed_examples)
            staging.rename(out)  # the complete directory appears at once
            card = AdapterCard.read(out)
        tracking.log_metrics(run_id, card.metrics, tracking_uri=tracking_uri)
        if card.loss_curve:
            tracking.log_series(run_id, "train_loss_curve", card.loss_curve, tracking_uri)
    return str(out), run_id


def register(reg: AdapterRegistry, local_dir: str, run_id: str | None) -> dict[str, Any]:
    """Publish and register as one unit; move `champion` only when validation improves."""
    card = AdapterCard.read(local_dir)
    version = reg.register(card, local_dir, run_id=run_id)
    reg.set_champion_if_better(version)
    return version_dict(version)
