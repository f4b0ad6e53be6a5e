"""Read a PEFT LoRA directory as per-module factors (A [r, in], B [out, r]) and scalings.

The module names are those of the base model (``model.layers.0.self_attn.q_proj``): PEFT's
``base_model.model.`` prefix and the ``.lora_A.weight`` suffix are stripped. The update a module
receives is ``scaling[name] * B @ A``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

PREFIX = "base_model.model."
_KEY = re.compile(r"(.+)\.lora_([AB])(?:\.[^.]+)?\.weight")  # PEFT saves without the adapter name


def read_lora_factors(adapter_dir: str | Path, device: str | torch.device = "cpu",
                      ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
    """({module name: (A, B)}, {module name: scaling}).

    scaling = alpha / r per module, with PEFT's `rank_pattern` / `alpha_pattern` overrides, and
    alpha / sqrt(r) under `use_rslora`. Raises ValueError naming the directory for a non-LoRA adapter,
    missing weights or an unpaired factor.
    """
    from peft import LoraConfig
    from peft.utils import load_peft_weights
    from peft.utils.other import get_pattern_key

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError(f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json)")
    try:
        config = LoraConfig.from_pretrained(str(adapter_dir))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{adapter_dir}: not a LoRA adapter config ({err})") from None
    weights = load_peft_weights(str(adapter_dir), device=str(device))
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        m = _KEY.fullmatch(key)
        if m:
            halves.setdefault(m.group(1).removeprefix(PREFIX), {})[m.group(2)] = tensor
    if not halves:
        raise ValueError(f"{adapter_dir}: no LoRA weights (lora_A / lora_B) in the adapter")
    factors, scaling = {}, {}
    for module, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{adapter_dir}: module {module} lacks lora_{'B' if 'A' in ab else 'A'}")
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(f"{adapter_dir}: module {module}: factor shapes {tuple(a.shape)} and {tuple(b.shape)} "
                             "are not a LoRA pair (A [r, in], B [out, r])")
        r = config.rank_pattern.get(get_pattern_key(config.rank_pattern, module), config.r) \
            if config.rank_pattern else config.r
        if r != a.shape[0]:
            raise ValueError(f"{adapter_dir}: module {module} has rank {a.shape[0]} but the config says {r}")
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern, module), config.lora_alpha) \
            if config.alpha_pattern else config.lora_alpha
        scaling[module] = alpha / (math.sqrt(r) if config.use_rslora else r)
        factors[module] = (a, b)
    return factors, scaling
