"""What a training run makes trainable on the shared base, and how the result is saved:

- `lora`: PEFT's LoRA on the configured (or the family's default) modules;
- `ia3`: PEFT's IA3 with PEFT's own default modules for the model family (learned rescaling vectors);
- `full`: every weight of the base (full fine-tuning), saved as one safetensors file of the tuned
  weights beside the lorasoup card (not a PEFT directory: `full_weights` swaps them in for evaluation).

Each leaves `base.model` exactly as it found it (layers, weights, train/eval mode, requires_grad flags),
also when training fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from lorasoup_core.adapters.config import TrainingConfig
from lorasoup_core.models import LoadedModel

Kind = Literal["lora", "ia3", "full"]
KINDS: tuple[Kind, ...] = ("lora", "ia3", "full")
FULL_WEIGHTS = "full_weights.safetensors"  # a full fine-tune's weights (every parameter, the base's dtype)


@dataclass
class Trainable:
    model: Any  # what the training loop calls (a PeftModel, or the base model itself)
    kind: Kind
    targets: list[str]  # adapted module names (every parameter's module for `full`: ["*"])
    rank: int  # LoRA rank; 0 for the others
    alpha: float

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def save(self, out_dir: Path) -> None:
        if self.kind == "full":
            from safetensors.torch import save_file

            # named_parameters lists a tied weight once, so the file holds no shared tensors
            save_file({n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters()},
                      str(out_dir / FULL_WEIGHTS))
        else:
            self.model.save_pretrained(str(out_dir))


def _peft_config(base: LoadedModel, kind: Kind, config: TrainingConfig, targets: list[str]):
    from peft import IA3Config, LoraConfig, TaskType

    task_type = TaskType.CAUSAL_LM if base.kind == "causal" else TaskType.SEQ_2_SEQ_LM
    if kind == "lora":
        return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=targets, task_type=task_type)
    return IA3Config(task_type=task_type)  # PEFT's default IA3 modules for the family


@contextlib.contextmanager
def trainable(base: LoadedModel, kind: Kind, config: TrainingConfig) -> Iterator[Trainable]:
    """The base prepared for training `kind`, under a forked torch RNG seeded with `config.seed` (LoRA's A
    init, dropout): the global RNG is left untouched."""
    devices = [base.device] if base.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        with _prepared(base, kind, config) as job:
            yield job


@contextlib.contextmanager
def _prepared(base: LoadedModel, kind: Kind, config: TrainingConfig) -> Iterator[Trainable]:
    model = base.model
    was_training = model.training
    grad_flags = {name: p.requires_grad for name, p in model.named_parameters()}
    if kind == "full":
        saved = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(True)
        try:
            yield Trainable(model, kind, ["*"], 0, 0.0)
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(saved[n])
            model.zero_grad(set_to_none=True)
            _restore(model, was_training, grad_flags)
        return
    from peft import get_peft_model

    targets = config.targets_for(model) if kind == "lora" else []
    had_peft_config = hasattr(model, "peft_config")
    peft_model = get_peft_model(model, _peft_config(base, kind, config, targets))
    if kind == "ia3":
        targets = sorted(peft_model.peft_config["default"].target_modules)
    try:
        yield Trainable(peft_model, kind, targets, config.rank if kind == "lora" else 0,
                        config.alpha if kind == "lora" else 0.0)
    finally:
        peft_model.unload()  # swaps every adapter layer back to its original module: base.model as before
        if not had_peft_config and hasattr(model, "peft_config"):
            del model.peft_config
        _restore(model, was_training, grad_flags)


def _restore(model: Any, was_training: bool, grad_flags: dict[str, bool]) -> None:
    model.train(was_training)
    for name, p in model.named_parameters():
        p.requires_grad_(grad_flags[name])


@contextlib.contextmanager
def full_weights(base: LoadedModel, adapter_dir: str | Path) -> Iterator[Any]:
    """The base with a full fine-tune's weights copied in for the block; its own weights copied back after
    (bit for bit). A file naming a parameter the base lacks, or of another shape, is refused naming both."""
    from safetensors.torch import load_file

    path = Path(adapter_dir) / FULL_WEIGHTS
    tuned = load_file(str(path))
    params = dict(base.model.named_parameters())
    for name, value in tuned.items():
        if name not in params or params[name].shape != value.shape:
            have = tuple(params[name].shape) if name in params else "no such parameter"
            raise ValueError(f"{path}: weight {name} {tuple(value.shape)} does not fit base {base.spec!r} ({have})")
    saved = {n: params[n].detach().to("cpu", copy=True) for n in tuned}
    with torch.no_grad():
        for n, value in tuned.items():
            params[n].copy_(value)
    try:
        yield base.model
    finally:
        with torch.no_grad():
            for n, value in saved.items():
                params[n].copy_(value)
