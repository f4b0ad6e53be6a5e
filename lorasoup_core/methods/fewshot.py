"""The few-shot tuning baselines LoraHub's paper compares composition with: a fresh LoRA (`lora-fewshot`),
PEFT's IA3 (`ia3-fewshot`) and full fine-tuning of the base (`full-fewshot`), each trained on the target's
shots alone through the project's trainer (`adapters.train`).

Learning rate and steps come from a small grid chosen without the test split: k-fold cross-validation over
the shots (2 folds by default; `folds: 0` is leave-one-out). For each learning rate and fold, one run trains on the other shots and
scores the held-out ones after each grid step count; the (lr, steps) with the lowest mean held-out loss is
trained on all shots. The grid, every point's held-out loss and the choice go to the method's MLflow run and
the adapter's lineage."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from lorasoup_core import tracking
from lorasoup_core.adapters import CARD_FILE, AdapterCard, TrainingConfig
from lorasoup_core.adapters.kinds import Kind
from lorasoup_core.adapters.train import encode_examples, held_out_losses, train_adapter, validation_loss
from lorasoup_core.data import Example, Task
from lorasoup_core.methods.base import (
    Consumes,
    MethodCall,
    MethodEnv,
    MethodError,
    MethodOutput,
    MethodSettings,
    Yields,
    method,
)
from lorasoup_core.models import LoadedModel


class FewShotTuneSettings(MethodSettings):
    lrs: list[PositiveFloat] = Field([3e-4, 1e-3, 3e-3], min_length=1,
                                     description="AdamW learning rates tried (each > 0).")
    steps: list[PositiveInt] = Field([5, 10, 20], min_length=1, description="Optimizer step counts tried (each "
                                     "> 0; one run per lr and fold scores every count).")
    folds: int = Field(2, ge=0, description="Cross-validation folds over the shots that choose lr and steps: "
                       "k >= 2: shot i is held out in fold i mod k; 0 = leave-one-out (one fold per shot).")
    max_length: int = Field(256, ge=8, description="Tokens per shot (the prompt loses its start first).")

    @field_validator("folds")
    @classmethod
    def _folds(cls, folds: int) -> int:
        if folds == 1:
            raise ValueError("folds 1 holds nothing out; use 0 (leave-one-out) or 2 or more")
        return folds


class LoraFewShotSettings(FewShotTuneSettings):
    rank: int | None = Field(None, ge=1, description="LoRA rank; None: the pool's.")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; None: the pool's.")
    target_modules: list[str] | None = Field(None, description="LoRA modules; None: the pool's.")


class IA3FewShotSettings(FewShotTuneSettings):
    lrs: list[PositiveFloat] = Field([3e-3, 1e-2, 3e-2], min_length=1,
                                     description="AdamW learning rates tried (each > 0).")


class FullFewShotSettings(FewShotTuneSettings):
    lrs: list[PositiveFloat] = Field([1e-5, 3e-5], min_length=1, description="AdamW learning rates tried (each > 0).")


@dataclass
class GridChoice:
    lr: float
    steps: int
    losses: dict[tuple[float, int], float]  # (lr, steps) -> mean held-out loss over the folds
    untrained: float  # mean held-out loss of the base itself, over the same folds

    def to_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "untrained_loss": self.untrained,
                "grid": [{"lr": lr, "steps": s, "held_out_loss": v} for (lr, s), v in self.losses.items()]}


def shots_task(call: MethodCall) -> Task:
    """What the method trains on: the shots, and nothing else of the target."""
    if call.target is None or not call.shots:
        raise MethodError(f"method {call.name!r} needs the target's shots")
    return Task(f"{call.target.name}-{call.name}", train=list(call.shots), template=call.target.template,
                metric=call.target.metric, source=call.target.source)


def folds_of(shots: list[Example], folds: int) -> list[tuple[list[Example], list[Example]]]:
    """(fit, held out) per fold: shot i is held out in fold i mod k (k = len(shots) for leave-one-out)."""
    k = len(shots) if folds == 0 else min(folds, len(shots))
    return [([s for i, s in enumerate(shots) if i % k != f], [s for i, s in enumerate(shots) if i % k == f])
            for f in range(k)]


def training_config(call: MethodCall, lr: float, steps: int, n_train: int) -> TrainingConfig:
    s: FewShotTuneSettings = call.settings
    pool = call.pool_training or TrainingConfig()
    return TrainingConfig(rank=getattr(s, "rank", None) or pool.rank, alpha=getattr(s, "alpha", None) or pool.alpha,
                          target_modules=getattr(s, "target_modules", None) or pool.target_modules, lr=lr, steps=steps,
                          batch_size=n_train, max_length=s.max_length, seed=call.seed, max_validation=0)


def choose(base: LoadedModel, call: MethodCall, kind: Kind) -> GridChoice:
    """The (lr, steps) of the grid with the lowest mean held-out loss over the folds of the shots."""
    s: FewShotTuneSettings = call.settings
    task = shots_task(call)
    if len(task.train) < 2:
        raise MethodError(f"method {call.name!r}: {len(task.train)} shot(s) cannot be split to choose lr and "
                          "steps; give the target at least 2 shots")
    splits = folds_of(task.train, s.folds)
    sums: dict[tuple[float, int], float] = {}
    untrained = 0.0
    for fit, held in splits:
        fold = Task(task.name, train=fit, template=task.template, metric=task.metric)
        cfg = training_config(call, s.lrs[0], max(s.steps), len(fit))
        untrained += validation_loss(base.model, encode_examples(base, fold, held, cfg.max_length),
                                     cfg.eval_batch_size) / len(splits)
        for lr in s.lrs:
            losses = held_out_losses(base, fold, held, training_config(call, lr, max(s.steps), len(fit)), kind,
                                     sorted(set(s.steps)))
            for steps, loss in losses.items():
                sums[(lr, steps)] = sums.get((lr, steps), 0.0) + loss / len(splits)
    # ties go to the smaller lr and the fewer steps (the grid's order)
    lr, steps = min(sorted(sums), key=lambda k: sums[k])
    return GridChoice(lr, steps, sums, untrained)


def tune(base: LoadedModel, call: MethodCall, env: MethodEnv, kind: Kind) -> MethodOutput:
    """Choose lr and steps on the shots, train on all of them, and write the adapter with its card."""
    task = shots_task(call)
    work = env.work_dir(call)
    done = work / "adapter"
    run = env.run
    tags = {"lorasoup.step": "tune", "lorasoup.task": call.target.name, "lorasoup.method": call.name}
    with tracking.run(run.experiment, f"tune {call.target.name} {call.name}", parent_run_id=run.parent_run_id,
                      tracking_uri=run.tracking_uri, tags=tags, store_uri=run.store_uri) as run_id:
        start = time.perf_counter()
        if (done / CARD_FILE).is_file():  # this call's adapter, finished by an earlier run
            card = AdapterCard.read(done)
            chosen = card.lineage.get("choice", {})
            seconds = card.metrics["tune_seconds"]
        else:
            choice = choose(base, call, kind)
            chosen = choice.to_dict()
            staging = work / f".staging-{uuid.uuid4().hex[:8]}"
            try:
                card = train_adapter(base, task, training_config(call, choice.lr, choice.steps, len(task.train)),
                                     staging, kind=kind, progress=False, embed_examples=0, origin="tuned",
                                     lineage={"method": call.method, "label": call.name, "kind": kind,
                                              "choice": chosen})
                seconds = time.perf_counter() - start  # choosing and the final fit
                card.metrics["tune_seconds"] = seconds
                card.write(staging)
                try:
                    staging.rename(done)  # `done` is complete or absent
                except OSError:
                    if not (done / CARD_FILE).is_file():  # not another process's finished copy of this call
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        tracking.log_params(run_id, {"method": call.method, "kind": kind, "seed": call.seed,
                                     **call.settings.model_dump(mode="json"), "chosen_lr": chosen.get("lr"),
                                     "chosen_steps": chosen.get("steps")}, run.tracking_uri)
        tracking.log_metrics(run_id, {"tune_seconds": seconds, "trainable_params": card.metrics["trainable_params"],
                                      "train_loss": card.metrics["train_loss"]}, tracking_uri=run.tracking_uri)
        tracking.log_json(run_id, chosen, "choice.json", run.tracking_uri)
        if card.loss_curve:
            tracking.log_series(run_id, "train_loss", card.loss_curve, run.tracking_uri)
    return MethodOutput(adapter_dir=done, run_id=run_id, trace=list(card.loss_curve), seconds=seconds,
                        few_shot_loss=card.metrics["train_loss"], trainable_params=int(card.metrics["trainable_params"]),
                        diagnostics={"choice": chosen, "kind": kind})


@method("lora-fewshot", LoraFewShotSettings, consumes={Consumes.SHOTS, Consumes.POOL_TRAINING}, yields=Yields.ADAPTER)
def lora_fewshot(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """A fresh LoRA (the pool's rank and modules) trained on the target's shots; lr and steps by CV on them."""
    return tune(base, call, env, "lora")


@method("ia3-fewshot", IA3FewShotSettings, consumes={Consumes.SHOTS}, yields=Yields.ADAPTER)
def ia3_fewshot(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """PEFT's IA3 trained on the target's shots; lr and steps by cross-validation on them."""
    return tune(base, call, env, "ia3")


@method("full-fewshot", FullFewShotSettings, consumes={Consumes.SHOTS}, yields=Yields.ADAPTER)
def full_fewshot(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """Full fine-tuning of every base weight on the target's shots; lr and steps by cross-validation on them."""
    return tune(base, call, env, "full")
