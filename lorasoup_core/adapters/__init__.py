"""LoRA adapters: training config, the trainer, cards, task embeddings, DATA-MIX, factor I/O.

Names load on first use (PEP 562): the registry and the list commands need the card only, not torch."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"CARD_FILE": "card", "AdapterCard": "card", "slug": "card", "slug_clash": "card", "TrainingConfig": "config",
          "embed_texts": "embed", "task_embedding": "embed", "MAX_ABS_WEIGHT": "factors", "UnsupportedAdapter": "factors",
          "read_lora_factors": "factors", "mix_tasks": "mix", "TrainingError": "train", "train_lora": "train",
          "train_adapter": "train", "held_out_losses": "train", "validation_loss": "train", "FULL_WEIGHTS": "kinds",
          "KINDS": "kinds", "full_weights": "kinds"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
