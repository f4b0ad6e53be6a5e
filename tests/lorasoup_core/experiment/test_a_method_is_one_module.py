"""A new method is one module: this file defines `shot-tune` (a fresh LoRA trained on the target's shots
alone), names itself as the config's plugin, and `lorasoup run` plans, runs, registers and evaluates it
beside lorahub and zero-shot with no product file knowing about it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic import Field

from lorasoup_core.adapters import TrainingConfig, train_lora
from lorasoup_core.adapters.card import CARD_FILE
from lorasoup_core.config import MethodSettings
from lorasoup_core.data import Task
from lorasoup_core.methods import Consumes, MethodCall, MethodEnv, MethodOutput, Yields, method


class ShotTuneSettings(MethodSettings):
    steps: int = Field(8, ge=1, description="Optimizer steps on the shots.")
    lr: float = Field(0.01, gt=0, description="AdamW learning rate.")


def shots_task(call: MethodCall) -> Task:
    """What the method trains on: the shots, and nothing else of the target."""
    return Task(f"{call.target.name}-shot-tune", train=list(call.shots), validation=list(call.shots),
                template=call.target.template, metric=call.target.metric)


@method("shot-tune", ShotTuneSettings, consumes={Consumes.SHOTS}, yields=Yields.ADAPTER)
def shot_tune(base, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """A fresh LoRA trained on the target's shots alone."""
    out = env.work_dir(call) / "adapter"
    if not (out / CARD_FILE).is_file():
        training = TrainingConfig(steps=call.settings.steps, lr=call.settings.lr, batch_size=len(call.shots))
        train_lora(base, shots_task(call), training, out, progress=False, embed_examples=0)
    return MethodOutput(adapter_dir=out)


def test_a_method_defined_here_runs_through_lorasoup_run(tmp_path):
    from lorasoup_core.adapters import AdapterCard
    from lorasoup_core.data import load_task
    from lorasoup_core.registry import AdapterRegistry
    from lorasoup_core.storage import fetch, open_store

    target = {"source": "skills", "name": "count_then_add", "n_test": 6}
    cfg = {"name": "one-module", "plugins": [__file__], "seed": 0,
           "model": {"spec": "tiny-llama", "device": "cpu"},
           "storage": {"uri": (tmp_path / "store").as_uri()},
           "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
           "pool": {"tasks": [{"source": "skills", "name": s, "n_train": 64, "n_validation": 8, "n_test": 4}
                              for s in ("add", "count_items")],
                    "training": {"steps": 6, "lr": 0.01, "batch_size": 16, "max_validation": 8}, "embed_examples": 8},
           "targets": [{"task": target, "shots": 4}],
           "selection": {"filters": ["embedding"], "k": 2},
           "methods": ["shot-tune", "lorahub", "zero-shot"],
           "compose": {"lorahub": {"budget": 4}, "shot-tune": {"steps": 5}},
           "eval": {"limit": 6, "batch_size": 6, "max_new_tokens": 4}}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_HOME": str(tmp_path / "pf"), "COLUMNS": "300",
           "LORASOUP_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "lorasoup"), "run", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=600)
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, shown

    registry = AdapterRegistry(tracking_uri=cfg["tracking"]["tracking_uri"], store=open_store(cfg["storage"]["uri"]))
    [tuned] = [v for v in registry.list(base_model="tiny-llama") if v.task == "count_then_add-shot-tune"]
    # trained on exactly the cell's shots (seed 0), registered, and its evaluated score recorded on it
    task = load_task(target)
    shots = Task("count_then_add-shot-tune", train=task.draw_shots(4, 0), validation=task.draw_shots(4, 0),
                 template=task.template, metric=task.metric)
    card = AdapterCard.read(fetch(tuned.store_uri, tmp_path / "tuned"))
    assert card.data_fingerprint == shots.fingerprint, shown
    assert "score.count_then_add" in tuned.tags and "on 6 test examples" in tuned.tags["score.count_then_add"], tuned.tags
    report = json.loads(fetch(proc.stdout.strip().splitlines()[-1].split("report: ")[1], tmp_path / "report")
                        .joinpath("results.json").read_text())
    rows = {r["method"]: r for r in report["rows_per_seed"]}
    assert {"shot-tune", "lorahub", "zero-shot"} <= set(rows) and rows["shot-tune"]["n"] == 6, rows
    assert "shot-tune" in report["adapters"]["count_then_add"] and "zero-shot" not in report["adapters"]["count_then_add"]
