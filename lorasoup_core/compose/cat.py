"""LoRA Soups' CAT with the paper's protocol (github.com/aksh555/LoRA-Soups).

One learnable scalar per adapter per LoRA module (learnable_lora/lora/layer.py), softmax-normalised over
the adapters of that module; the adapters stay frozen. The scalars are trained like a LoRA: on a data mix
of the candidates' own training sets (train_cat.sh trains on a math+code mix for the math and code LoRAs),
minibatches, AdamW with warm-up, loss over all tokens, dropout on each LoRA's input; the validation loss
on a held-out part of the mix is evaluated every `eval_every` steps and the best checkpoint is kept
(cat_train.py: HF Trainer with load_best_model_at_end). Those best coefficients are exported.

The target's shots take no part in the fit (`cat_fewshot` fits on them instead). Each mixed example
carries its own task's prompt template (`mix_tasks`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from lorasoup_core import interrupt
from lorasoup_core.adapters.mix import mix_tasks
from lorasoup_core.adapters.train import Encoded, batch_of, batch_plan, encode_examples
from lorasoup_core.compose.base import ComposerOutput, Inputs, ObjectiveSettings, composer
from lorasoup_core.compose.engine import Engine
from lorasoup_core.compose.merges import refuse_nonfinite
from lorasoup_core.compose.stack import CompositionError
from lorasoup_core.data import Example, Task
from lorasoup_core.data.prompts import IGNORE
from lorasoup_core.models import LoadedModel


class CatSettings(ObjectiveSettings):
    max_length: int = Field(256, ge=8, description="Tokens per example, the prompt losing its start first "
                            "(train_cat.sh: --cutoff_len 256).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training mix (train_cat.sh: --num_epochs 1).")
    batch_size: int = Field(6, ge=1, description="Examples per step. train_cat.sh passes --batch_size 10 "
                            "--micro_batch_size 6, and cat_train.py accumulates 10 // 6 = 1 micro-batch per "
                            "step, so each step of the original sees 6 examples.")
    lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate of the coefficient logits "
                      "(train_cat.sh: --learning_rate 1e-4; cat_train.py: optim adamw_torch).")
    warmup: float = Field(100, ge=0, description="Linear warm-up from 0: a number of steps, or a fraction of "
                          "all steps when below 1 (cat_train.py: warmup_steps=100).")
    schedule: Literal["linear", "constant"] = Field("linear", description="Learning rate after warm-up: linear "
                                                    "decay to 0 (HF Trainer's default, which cat_train.py keeps) "
                                                    "or constant.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (cat_train.py sets none: HF "
                                "Trainer's default 0).")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this, None for no "
                                        "clipping (HF Trainer's default 1.0, which cat_train.py keeps).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on each LoRA's input while training, one mask "
                           "per adapter (layer.py applies each adapter's own lora_dropout before A; the skill "
                           "LoRAs are trained with 0.05 in skill_finetune.py). Forces the low-rank engine mode.")
    loss_tokens: Literal["all", "target"] = Field("all", description="Loss over every token of prompt and answer, "
                                                  "or over the answer only (cat_train.py: train_on_inputs=True, "
                                                  "labels = input_ids). A seq2seq model predicts only the answer "
                                                  "either way.")
    init: Literal["random", "uniform"] = Field("random", description="Coefficient logits drawn N(0, 1) from the "
                                               "run's seed (layer.py: torch.randn(1) per adapter per layer), or "
                                               "zeros: uniform 1/n after the softmax.")
    proportions: list[float] | dict[str, float] | None = Field(
        None, description="Share of each candidate's training data in the mix: a list in candidate order, or by "
        "candidate name (candidates left out get 0 and need no training data); default equal.")
    mix_size: int | None = Field(None, ge=1, description="Examples in the mix before the validation hold-out; "
                                 "default as many as the largest candidate's train split (mix_tasks). The "
                                 "original trains on a prepared mix file (train_cat.sh: "
                                 "metamath_code_alpaca_10k.json).")
    validation: Literal["holdout", "splits"] = Field("holdout", description="Validation examples: `val_size` "
                                                     "held out of the mix (cat_train.py: val_set_size, split off "
                                                     "the mix data) or the candidates' own validation splits (up "
                                                     "to 32 each, mix_tasks).")
    val_size: int = Field(120, ge=1, description="Examples held out of the mix for validation (train_cat.sh: "
                          "--val_set_size 120).")
    eval_every: int = Field(80, ge=1, description="Steps between validation evaluations, plus one after the last "
                            "step; the coefficients with the lowest validation loss are exported (train_cat.sh: "
                            "--eval_step 80 --save_step 80; cat_train.py: load_best_model_at_end, eval loss).")
    eval_batch_size: int = Field(8, ge=1, description="Validation examples per forward; memory only (HF "
                                 "Trainer's per_device_eval_batch_size default 8).")


def proportions_for(names: list[str], cfg: CatSettings) -> list[float]:
    """One mix share per candidate, in candidate order."""
    p = cfg.proportions
    if p is None:
        return [1.0] * len(names)
    if isinstance(p, dict):
        unknown = sorted(set(p) - set(names))
        if unknown:
            raise CompositionError(f"cat proportions name no candidate: {', '.join(unknown)} "
                                   f"(candidates: {', '.join(names)})")
        return [float(p.get(n, 0.0)) for n in names]
    if len(p) != len(names):
        raise CompositionError(f"cat proportions: {len(p)} values for {len(names)} candidates ({', '.join(names)})")
    return [float(x) for x in p]


def mix_split(names: list[str], train_data: dict[str, Task], cfg: CatSettings,
              seed: int) -> tuple[Task, list[Example], list[Example]]:
    """The mix of the candidates' training data (prompts already applied), its train and validation examples."""
    props = proportions_for(names, cfg)
    missing = [n for n, p in zip(names, props, strict=True) if p > 0 and n not in train_data]
    if missing:
        raise CompositionError(f"cat trains on the candidates' own training data, and there is none for "
                               f"{', '.join(map(repr, missing))}; pass train_data for them (or proportion 0), or "
                               f"use 'cat_fewshot', which fits on the target's shots instead")
    used = [(n, p) for n, p in zip(names, props, strict=True) if p > 0]
    try:
        mix = mix_tasks([train_data[n] for n, _ in used], [p for _, p in used], "cat-mix", seed, cfg.mix_size)
    except ValueError as err:
        raise CompositionError(f"cat training mix: {err}") from None
    if cfg.validation == "splits":
        train, val = mix.train, mix.validation
    else:  # mix.train is shuffled (seeded): hold out its first distinct examples, and every copy of them
        val = list(dict.fromkeys(mix.train))[: cfg.val_size]
        held = set(val)
        train = [e for e in mix.train if e not in held]
    if not train or not val:
        raise CompositionError(f"cat: the mix ({mix.source}) leaves {len(train)} training and {len(val)} "
                               f"validation examples; both must be non-empty (validation={cfg.validation!r}, "
                               f"val_size={cfg.val_size})")
    return mix, train, val


def encode_mix(base: LoadedModel, mix: Task, examples: list[Example], loss_tokens: str, max_length: int) -> Encoded:
    """Tokenised examples; with `all`, causal labels are every real token (prompts.encode labels the answer)."""
    enc = encode_examples(base, mix, examples, max_length)
    if loss_tokens == "all" and base.kind == "causal":
        t = enc.tensors
        t["labels"] = t["input_ids"].masked_fill(t["attention_mask"] == 0, IGNORE)
    return enc


def _ce_sum(base: LoadedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over a batch's labelled tokens, and their count."""
    labels = batch["labels"]
    if base.kind == "causal":
        logits = base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = labels[:, 1:]
    else:  # the labels build the decoder inputs
        logits = base.model(**batch).logits
    mask = labels != IGNORE
    return F.cross_entropy(logits[mask].float(), labels[mask], reduction="sum"), mask.sum()


def mix_loss(base: LoadedModel, enc: Encoded, batch_size: int = 8) -> float:
    """Token-mean cross-entropy over all of `enc`'s labelled tokens, under whatever is applied to the base
    (independent of batch size)."""
    total, count = torch.zeros((), device=base.device), torch.zeros((), device=base.device, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, enc.n, batch_size):
            s, c = _ce_sum(base, batch_of(enc, torch.arange(start, min(start + batch_size, enc.n))))
            total, count = total + s, count + c
    return float(total / count.clamp_min(1))


def _lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """HF's linear / constant-with-warm-up schedules (step 0 has factor 0 while warming up, as there)."""
    if step < warmup:
        return step / warmup
    return 1.0 if schedule == "constant" else max(0.0, (total - step) / max(1, total - warmup))


def _spread(w: torch.Tensor) -> float:
    """Mean over modules of (largest - smallest) coefficient: 0 for uniform."""
    return float((w.max(-1).values - w.min(-1).values).mean())


@composer("cat", CatSettings, needs_train_data=True)
def cat(inp: Inputs[CatSettings]) -> ComposerOutput:
    """LoRA Soups' CAT: per-module coefficients trained on a mix of the candidates' training data."""
    cfg, stack, base = inp.settings, inp.stack, inp.base
    refuse_nonfinite(stack, "cat", inp.target.name)
    mix, train, val = mix_split(stack.names, inp.train_data, cfg, inp.seed)
    train_enc = encode_mix(base, mix, train, cfg.loss_tokens, cfg.max_length)
    val_enc = encode_mix(base, mix, val, cfg.loss_tokens, cfg.max_length)
    steps = max(1, math.ceil(cfg.epochs * train_enc.n / cfg.batch_size))
    warmup = round(cfg.warmup * steps) if cfg.warmup < 1 else int(cfg.warmup)
    plan = batch_plan(train_enc.n, cfg.batch_size, steps, inp.seed)

    n, k = len(stack), len(stack.modules)
    init = torch.randn(k, n, generator=torch.Generator().manual_seed(inp.seed)) if cfg.init == "random" \
        else torch.zeros(k, n)
    logits = init.to(base.device, torch.float32).requires_grad_(True)
    opt = torch.optim.AdamW([logits], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(_lr_factor, warmup=warmup, total=steps,
                                                           schedule=cfg.schedule))
    tokens = cfg.batch_size * int(train_enc.input_len.float().mean())
    engine = Engine(base, stack, "exact", 1, cfg.engine_mode, tokens, dropout=cfg.dropout)

    def validate(w: torch.Tensor) -> float:
        engine.train(False)
        engine.set(w[None])
        return mix_loss(base, val_enc, cfg.eval_batch_size)

    trace: list[float] = []
    curve: list[list[float]] = []
    w0 = torch.softmax(logits.detach(), -1)
    devices = [base.device] if base.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), engine:
        torch.manual_seed(inp.seed)  # dropout masks; the caller's RNG is left as it was
        val_uniform, val_init = validate(torch.full_like(w0, 1.0 / n)), validate(w0)
        best_val, best_step, best = math.inf, 0, w0
        for step, idx in enumerate(tqdm(plan, desc=f"cat {inp.target.name}", leave=False), 1):
            interrupt.check()
            engine.train(True)
            engine.set(torch.softmax(logits, -1)[None])
            total, count = _ce_sum(base, batch_of(train_enc, idx))
            loss = total / count.clamp_min(1)  # token mean over the batch, as HF's causal LM loss
            value = loss.item()
            if not math.isfinite(value):
                raise CompositionError(f"cat training loss is {value} at step {step}/{steps} (target "
                                       f"{inp.target.name!r}); lower the learning rate (lr={cfg.lr:g})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([logits], cfg.max_grad_norm)
            opt.step()
            sched.step()
            trace.append(value)
            if step % cfg.eval_every == 0 or step == steps:
                w = torch.softmax(logits.detach(), -1)
                v = validate(w)
                curve.append([step, v])
                if v < best_val:  # strictly lower: the earlier checkpoint wins a tie, as in HF
                    best_val, best_step, best = v, step, w.clone()
    final = torch.softmax(logits.detach(), -1)
    weights = {m: best[j].tolist() for j, m in enumerate(stack.modules)}
    diagnostics = {
        "steps": steps, "warmup_steps": warmup, "n_train": train_enc.n, "n_validation": val_enc.n,
        "mix": mix.source, "val_curve": curve, "best_step": best_step, "best_val_loss": best_val,
        "val_loss_init": val_init, "val_loss_uniform": val_uniform,
        "coef_spread_init": _spread(w0), "coef_spread_best": _spread(best), "coef_spread_final": _spread(final),
        "lowrank_modules": sum(not s.dense for s in engine.slots.values()),
        "trainable_params": logits.numel(),
    }
    return ComposerOutput(weights, stack.exact(best.to(base.dtype)), trace, diagnostics)
