"""Read a PEFT LoRA directory as per-module factors (A [r, in], B [out, r]) and scalings."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

PREFIX = "base_model.model."


def _pattern_value(name: str, patterns: dict[str, float], default: float) -> float:
    for key, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{key}", name):
            return value
    return default


def read_lora_factors(adapter_dir: str | Path, device: str | torch.device = "cpu",
                      ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
    """({module name in the base model: (A, B)}, {module: scaling}); scaling = alpha / r (or / sqrt(r))."""
    from peft import LoraConfig
    from peft.utils import load_peft_weights

    adapter_dir = Path(adapter_dir)
    config = LoraConfig.from_pretrained(str(adapter_dir))
    weights = load_peft_weights(str(adapter_dir), device=str(device))
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        m = re.fullmatch(r"(.+)\.lora_([AB])(?:\.default)?\.weight", key)
        if not m:
            continue
        module = m.group(1).removeprefix(PREFIX)
        factors.setdefault(module, {})[m.group(2)] = tensor
    if not factors:
        raise ValueError(f"{adapter_dir}: no LoRA weights found")
    out, scaling = {}, {}
    for module, ab in sorted(factors.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{adapter_dir}: module {module} lacks lora_{'B' if 'A' in ab else 'A'}")
        r = ab["A"].shape[0]
        alpha = _pattern_value(module, config.alpha_pattern or {}, config.lora_alpha)
        scaling[module] = alpha / (math.sqrt(r) if config.use_rslora else r)
        out[module] = (ab["A"], ab["B"])
    return out, scaling
