"""Train one LoRA on one task with PEFT; write a plain PEFT directory plus the lorasoup card.

The examples are tokenised once up front (``data.prompts.encode``) and kept on the device; a batch
is a row index plus a trim to its longest real sequence, so no per-step tokenisation or sorting.
The training loop syncs with the device only every ``LOG_EVERY`` steps (loss and weight checks, progress
bar): one read-back carries the step losses and the largest |w| of every LoRA factor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lorasoup_core import interrupt
from lorasoup_core.adapters.card import AdapterCard
from lorasoup_core.adapters.config import TrainingConfig
from lorasoup_core.adapters.embed import task_embedding
from lorasoup_core.adapters.factors import MAX_ABS_WEIGHT, PREFIX
from lorasoup_core.adapters.kinds import Kind, trainable
from lorasoup_core.data import DataError, Example, Task
from lorasoup_core.data.prompts import IGNORE, encode, per_example_loss
from lorasoup_core.models import LoadedModel

LOG_EVERY = 10  # steps between device syncs (loss and weight checks, progress bar)
TRAIN_LOSS_LAST = 10  # train_loss metric: mean of the last N step losses
LOSS_CURVE_POINTS = 200


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or infinite loss, diverged LoRA weights); names the task and the step."""


@dataclass
class Encoded:
    """Pre-tokenised examples on the device, with their real lengths on the CPU (for sync-free trimming)."""

    tensors: dict[str, torch.Tensor]  # input_ids, attention_mask, labels (right padded)
    input_len: torch.Tensor  # [n] real input tokens
    label_len: torch.Tensor  # [n] label width needed (causal: = input_len; seq2seq: target length)
    kind: str

    @property
    def n(self) -> int:
        return len(self.input_len)


def encode_examples(base: LoadedModel, task: Task, examples: list[Example], max_length: int) -> Encoded | None:
    if not examples:
        return None
    enc = encode(base.kind, base.tokenizer, [task.prompt(e) for e in examples], [e.target for e in examples],
                 max_length)
    input_len = enc["attention_mask"].sum(1)
    label_len = input_len if base.kind == "causal" else (enc["labels"] != IGNORE).sum(1)
    return Encoded({k: v.to(base.device) for k, v in enc.items()}, input_len, label_len, base.kind)


def batch_of(enc: Encoded, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows `idx` (a CPU tensor), trimmed to their longest real sequence (encode() pads on the right)."""
    width, label_width = int(enc.input_len[idx].max()), int(enc.label_len[idx].max())
    dev_idx = idx.to(enc.tensors["input_ids"].device)
    return {"input_ids": enc.tensors["input_ids"][dev_idx, :width],
            "attention_mask": enc.tensors["attention_mask"][dev_idx, :width],
            "labels": enc.tensors["labels"][dev_idx, :label_width]}


def batch_plan(n: int, batch_size: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Row indices for every step: consecutive chunks of a stream of seeded permutations (each epoch sees
    every example once; a batch may straddle two epochs)."""
    gen = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    stream = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-need // n))])
    return list(stream[:need].view(steps, batch_size))


def batch_tokens(enc: Encoded, idx: torch.Tensor) -> int:
    """Real tokens the model reads in a batch (encoder + decoder targets for seq2seq)."""
    return int(enc.input_len[idx].sum()) + (int(enc.label_len[idx].sum()) if enc.kind == "seq2seq" else 0)


@torch.inference_mode()
def validation_loss(model, enc: Encoded | None, batch_size: int) -> float | None:
    """Mean over examples of the mean target-token cross-entropy (independent of batch size)."""
    if enc is None:
        return None
    losses = []
    for start in range(0, enc.n, batch_size):
        batch = batch_of(enc, torch.arange(start, min(start + batch_size, enc.n)))
        labels = batch.pop("labels")
        # seq2seq: labels build the decoder inputs (shifted right); causal logits align with input_ids
        logits = model(**batch, labels=labels).logits if enc.kind == "seq2seq" else model(**batch).logits
        losses.append(per_example_loss(logits, labels, enc.kind).float().cpu())
    return float(torch.cat(losses).mean())


def train_lora(base: LoadedModel, task: Task, config: TrainingConfig, out_dir: str | Path, *,
               progress: bool = True, embed_examples: int = 64) -> AdapterCard:
    """Train a LoRA for `task` on `base` and write a plain PEFT directory + card to `out_dir` (see
    `train_adapter`)."""
    return train_adapter(base, task, config, out_dir, progress=progress, embed_examples=embed_examples)


def train_adapter(base: LoadedModel, task: Task, config: TrainingConfig, out_dir: str | Path, *, kind: Kind = "lora",
                  progress: bool = True, embed_examples: int = 64, origin: str = "trained",
                  lineage: dict | None = None) -> AdapterCard:
    """Train `kind` (a LoRA, PEFT's IA3, or every weight: `adapters.kinds`) for `task` on `base` and write
    it with the lorasoup card to `out_dir`.

    `base.model` is shared: it is prepared for training and restored exactly afterwards, also when training
    fails. The global torch RNG is left untouched (training runs under a forked, seeded RNG).
    `embed_examples` > 0 stores the task embedding of that many training prompts in the card.
    """
    check_train_data(task)
    model = base.model
    if kind == "lora":
        try:
            config.targets_for(model)  # a bad target or rank: one error before anything is encoded
        except ValueError as err:
            raise ValueError(f"task {task.name!r}: {err}") from None
    train_enc = encode_examples(base, task, task.train, config.max_length)
    val_enc = encode_examples(base, task, task.validation[: config.max_validation], config.max_length)
    val_base = validation_loss(model, val_enc, config.eval_batch_size)
    embedding = task_embedding(base, task, n=embed_examples, seed=config.seed) if embed_examples else []
    with trainable(base, kind, config) as job:  # under a forked RNG seeded with config.seed
        metrics, curve = _fit(job.model, task.name, config, train_enc, val_enc, progress)
        metrics["trainable_params"] = job.n_trainable
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        job.save(out_dir)
    if val_base is not None:
        metrics["val_loss_base"] = val_base
    card = AdapterCard(name=task.name, task=task.name, base_model=base.spec, base_fingerprint=base.fingerprint,
                       data_fingerprint=task.fingerprint, config_fingerprint=config.fingerprint,
                       training=config.model_dump(mode="json"), metrics=metrics, loss_curve=curve,
                       rank=job.rank, alpha=job.alpha, target_modules=job.targets, embedding=embedding, kind=kind,
                       origin=origin, lineage=lineage or {})
    card.write(out_dir)
    return card


def held_out_losses(base: LoadedModel, task: Task, held_out: list[Example], config: TrainingConfig, kind: Kind,
                    at_steps: list[int]) -> dict[int, float]:
    """Train `kind` on `task.train` for max(at_steps) steps and return the mean loss on `held_out` (examples
    the training never sees) after each of `at_steps`; nothing is saved, the base is restored."""
    check_train_data(task)
    config = config.model_copy(update={"steps": max(at_steps), "epochs": None})
    train_enc = encode_examples(base, task, task.train, config.max_length)
    held_enc = encode_examples(base, task, held_out, config.max_length)
    out: dict[int, float] = {}
    with trainable(base, kind, config) as job:

        def probe(step: int) -> None:
            if step in at_steps:
                job.model.eval()
                out[step] = validation_loss(job.model, held_enc, config.eval_batch_size)
                job.model.train()

        _fit(job.model, task.name, config, train_enc, None, progress=False, probe=probe)
    return out


def check_train_data(task: Task) -> None:
    """Refuse a task with nothing to learn: no train examples (saying what loading dropped), or only empty
    targets (the loss would cover no token, and the adapter would register as if trained)."""
    where = task.files.get("train") or task.source
    at = f"{where}: " if where else ""
    if not task.train:
        raise DataError(f"{at}task {task.name!r} has no train examples" + "".join(f"; {n}" for n in task.notes))
    if all(not e.target.strip() for e in task.train):
        raise DataError(f"{at}task {task.name!r}: all {len(task.train)} train examples have an empty target, "
                        "so there is nothing to learn")


def _peaks(params: list[torch.Tensor]) -> torch.Tensor:
    """max |w| of each factor, on the device (NaN propagates through max, so a NaN factor reads NaN)."""
    return torch.stack([p.detach().abs().max().float() for p in params])


def _check_weights(peaks: list[float], names: list[str], task_name: str, step: int, steps: int, lr: float) -> None:
    worst = max(range(len(peaks)), key=lambda i: math.inf if math.isnan(peaks[i]) else peaks[i])
    peak = peaks[worst]
    if math.isfinite(peak) and peak <= MAX_ABS_WEIGHT:
        return
    where = names[worst].removeprefix(PREFIX).replace(".default.weight", "")
    raise TrainingError(f"task {task_name!r}: LoRA weights diverged (max |w| = {peak:.3g} in {where}, over the limit "
                        f"of {MAX_ABS_WEIGHT:g}) by step {step}/{steps}; lower the learning rate (lr={lr:g})")


def _fit(peft_model, task_name: str, config: TrainingConfig, train_enc: Encoded, val_enc: Encoded | None,
         progress: bool, probe: Callable[[int], None] | None = None) -> tuple[dict[str, float], list[float]]:
    steps = config.steps_for(train_enc.n)
    plan = batch_plan(train_enc.n, config.batch_size, steps, config.seed)
    named = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = config.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    pending: list[torch.Tensor] = []  # step losses not yet read back from the device
    history: list[float] = []
    tokens = 0
    peft_model.train()
    bar = tqdm(total=steps, desc=f"train {task_name}", disable=not progress, leave=False)
    t0 = time.perf_counter()
    for step, idx in enumerate(plan):
        interrupt.check()
        tokens += batch_tokens(train_enc, idx)
        loss = peft_model(**batch_of(train_enc, idx)).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        pending.append(loss.detach())
        if len(pending) == LOG_EVERY or step == steps - 1 or probe is not None:
            # the one sync per LOG_EVERY steps: the step losses, then each factor's max |w|
            read = torch.cat([torch.stack(pending).float(), _peaks(params)]).tolist()
            values, peaks = read[: len(pending)], read[len(pending):]
            for offset, value in enumerate(values):  # a NaN loss names its own step: checked first
                if not math.isfinite(value):
                    at = step - len(values) + offset + 2  # 1-based step number
                    raise TrainingError(f"task {task_name!r}: training loss is {value} at step {at}/{steps}; "
                                        f"lower the learning rate (lr={config.lr:g}) or check the data")
            _check_weights(peaks, names, task_name, step + 1, steps, config.lr)
            history += values
            pending.clear()
            bar.update(len(values))
            bar.set_postfix(loss=f"{values[-1]:.4f}")
        if probe is not None:
            probe(step + 1)
    seconds = time.perf_counter() - t0
    bar.close()
    peft_model.eval()
    metrics = {"train_loss": sum(history[-TRAIN_LOSS_LAST:]) / len(history[-TRAIN_LOSS_LAST:]), "steps": steps,
               "train_tokens": tokens, "tokens_per_s": tokens / seconds, "seconds": seconds}
    val_loss = validation_loss(peft_model, val_enc, config.eval_batch_size)
    if val_loss is not None:
        metrics["val_loss"] = val_loss
    stride = max(1, -(-len(history) // LOSS_CURVE_POINTS))
    return metrics, history[::stride]
