"""Shared-prefix KV caching for causal models: prompts that open with the same tokens (few-shot
demonstrations, the official CoT prompt, a PAL prompt, a task instruction) have that prefix encoded once;
every batch then starts from a copy of its key/value cache and only encodes its own suffixes.

Positions and masks are those of the uncached path: a batch is ``prefix + left-padded suffixes`` with the
padding masked, and ``generate`` derives position ids from the attention mask, so each row's tokens sit at
the same positions as in an unpadded prompt."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Below this many shared tokens a separate prefix forward costs more than it saves.
MIN_PREFIX_TOKENS = 16


def common_prefix_length(ids: Sequence[Sequence[int]]) -> int:
    """How many leading token ids all sequences share, leaving every sequence at least one token of its
    own (generation needs a last input position to predict from)."""
    if len(ids) < 2:
        return 0
    first, shortest = ids[0], min(len(row) for row in ids)
    n = 0
    while n < shortest - 1 and all(row[n] == first[n] for row in ids):
        n += 1
    return n


@dataclass
class PrefixCache:
    """The key/value cache of ``ids`` (one row), copied out per batch."""

    ids: list[int]
    cache: Any  # transformers DynamicCache of one row

    def __len__(self) -> int:
        return len(self.ids)

    def for_batch(self, rows: int) -> Any:
        """A fresh cache holding the prefix for ``rows`` rows (generate appends to it)."""
        cache = copy.deepcopy(self.cache)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return cache


def supports_prefix_cache(model: Any) -> bool:
    """Causal models whose forward returns a DynamicCache (hybrid, sliding-window or static caches are
    left on the uncached path)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return True


@torch.inference_mode()
def encode_prefix(model: Any, ids: Sequence[int], device: torch.device) -> PrefixCache | None:
    """One forward over the shared prefix; None when the model's cache is not a plain DynamicCache."""
    from transformers import DynamicCache

    if len(ids) < MIN_PREFIX_TOKENS or not supports_prefix_cache(model):
        return None
    tensor = torch.tensor([list(ids)], device=device)
    out = model(input_ids=tensor, attention_mask=torch.ones_like(tensor), use_cache=True,
                past_key_values=DynamicCache())
    cache = out.past_key_values
    if type(cache) is not DynamicCache or cache.get_seq_length() != len(ids):
        return None
    return PrefixCache(list(ids), cache)


def prefixed_batch(prefix: PrefixCache, padded: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``generate`` inputs for left-padded suffixes behind the cached prefix: the full ids (generate feeds
    only those past the cache), the full attention mask and a per-batch copy of the cache."""
    ids, mask = padded["input_ids"], padded["attention_mask"]
    rows = ids.shape[0]
    head = torch.tensor(prefix.ids, device=ids.device, dtype=ids.dtype).expand(rows, -1)
    return {"input_ids": torch.cat([head, ids], dim=1),
            "attention_mask": torch.cat([torch.ones_like(head, dtype=mask.dtype), mask], dim=1),
            "past_key_values": prefix.for_batch(rows)}
