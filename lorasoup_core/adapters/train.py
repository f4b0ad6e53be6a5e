"""Train one LoRA on one task with PEFT; write a plain PEFT directory plus the lorasoup card."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lorasoup_core.adapters.card import AdapterCard
from lorasoup_core.adapters.config import TrainingConfig
from lorasoup_core.data import DataError, Task
from lorasoup_core.data.prompts import encode, per_example_loss
from lorasoup_core.models import LoadedModel

LOSS_HISTORY_POINTS = 200


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or infinite loss); names the task and the step."""


def encode_examples(base: LoadedModel, task: Task, split: str, max_length: int, limit: int | None = None):
    examples = task.split(split)[:limit]
    if not examples:
        return None
    return encode(base.kind, base.tokenizer, [task.prompt(e) for e in examples], [e.target for e in examples],
                  max_length)


def batch_of(enc: dict[str, torch.Tensor], idx: torch.Tensor, device: torch.device, kind: str,
             ) -> dict[str, torch.Tensor]:
    """Rows `idx`, trimmed to their longest real sequence (encode() pads on the right), on the device."""
    width = int(enc["attention_mask"][idx].sum(1).max())
    labels = enc["labels"][idx]
    # causal labels align with input_ids; seq2seq labels are the decoder's own sequence
    labels = labels[:, :width] if kind == "causal" else labels[:, : int((labels != -100).sum(1).max())]
    return {"input_ids": enc["input_ids"][idx, :width].to(device),
            "attention_mask": enc["attention_mask"][idx, :width].to(device), "labels": labels.contiguous().to(device)}


@torch.inference_mode()
def validation_loss(model, kind: str, enc: dict[str, torch.Tensor] | None, batch_size: int,
                    device: torch.device) -> float | None:
    """Mean over examples of the mean target-token cross-entropy (independent of batch size)."""
    if enc is None:
        return None
    losses = []
    n = enc["input_ids"].shape[0]
    for start in range(0, n, batch_size):
        b = batch_of(enc, torch.arange(start, min(start + batch_size, n)), device, kind)
        labels = b.pop("labels")
        if kind == "seq2seq":
            logits = model(**b, labels=labels).logits
        else:
            logits = model(**b).logits
        losses.append(per_example_loss(logits, labels, kind).float().cpu())
    return float(torch.cat(losses).mean())


def train_lora(base: LoadedModel, task: Task, config: TrainingConfig, out_dir: str | Path, *,
               progress: bool = True) -> AdapterCard:
    """Train a LoRA for `task` on `base`; `base.model` is left exactly as it was."""
    from peft import LoraConfig, TaskType, get_peft_model

    if not task.train:
        raise DataError(f"task {task.name!r} has no train examples")
    model, device = base.model, base.device
    targets = config.targets_for(model)
    train_enc = encode_examples(base, task, "train", config.max_length)
    val_enc = encode_examples(base, task, "validation", config.max_length, config.max_validation)
    val_base = validation_loss(model, base.kind, val_enc, config.eval_batch_size, device)

    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets,
                      task_type=TaskType.CAUSAL_LM if base.kind == "causal" else TaskType.SEQ_2_SEQ_LM)
    peft_model = get_peft_model(model, lora)
    try:
        card = _fit(base, peft_model, task, config, train_enc, val_enc, targets, val_base, Path(out_dir), progress)
    finally:
        peft_model.unload()  # drop the LoRA layers: the shared base model is unchanged
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return card


def _fit(base, peft_model, task, config, train_enc, val_enc, targets, val_base, out_dir, progress) -> AdapterCard:
    n = train_enc["input_ids"].shape[0]
    steps = math.ceil(config.epochs * n / config.batch_size) if config.epochs else config.steps
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (config.warmup_steps + 1)))
    gen = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(n, generator=gen)
    pos, history, tokens = 0, [], 0
    peft_model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {task.name}", disable=not progress, leave=False)
    for step in bar:
        if pos + config.batch_size > n and pos > 0:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos: pos + config.batch_size]
        pos += config.batch_size
        batch = batch_of(train_enc, idx, base.device, base.kind)
        tokens += int(batch["attention_mask"].sum())
        loss = peft_model(**batch).loss
        value = loss.detach().item()
        if not math.isfinite(value):
            raise TrainingError(f"task {task.name!r}: loss is {value} at step {step + 1}; lower the learning rate "
                                f"(lr={config.lr}) or check the data")
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        history.append(value)
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{value:.3f}")
    seconds = time.perf_counter() - t0
    peft_model.eval()
    val_loss = validation_loss(peft_model, base.kind, val_enc, config.eval_batch_size, base.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir))
    stride = max(1, len(history) // LOSS_HISTORY_POINTS)
    metrics = {"train_loss": sum(history[-10:]) / len(history[-10:]), "val_loss": val_loss, "val_loss_base": val_base,
               "steps": steps, "train_tokens": tokens, "tokens_per_s": tokens / seconds, "seconds": seconds,
               "loss_history": history[::stride]}
    card = AdapterCard(name=task.name, task=task.name, base_model=base.spec, base_fingerprint=base.fingerprint,
                       data_fingerprint=task.fingerprint, config_fingerprint=config.fingerprint,
                       training=config.model_dump(mode="json"), metrics=metrics, rank=config.rank, alpha=config.alpha,
                       target_modules=targets)
    card.write(out_dir)
    return card
