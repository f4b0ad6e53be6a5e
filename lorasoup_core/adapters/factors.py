"""Read a PEFT LoRA directory as per-module factors (A [r, in], B [out, r]) and scalings.

The module names are those of the base model (``model.layers.0.self_attn.q_proj``): PEFT's
``base_model.model.`` prefix and the ``.lora_A.weight`` suffix are stripped. The update a module
receives is ``scaling[name] * B @ A``. Adapters whose effect is not that update (DoRA, embedding
LoRA, ``modules_to_save``, biases, other PEFT types and LoRA variants) raise `UnsupportedAdapter`
instead of being read without the parts that do not fit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

PREFIX = "base_model.model."
_KEY = re.compile(r"(.+)\.lora_([AB])(?:\.[^.]+)?\.weight")  # PEFT saves without the adapter name
# LoRA variants whose forward is still scaling * B @ A (VeLoRA only changes the backward pass).
_SAME_FORWARD_VARIANTS = {"velora_config"}
PLAIN = "lorasoup composes plain LoRA only (the update scaling * B @ A on Linear layers)"
# A LoRA factor entry beyond this is refused, at import and during training: trained factors are O(1), and
# 1e4 already makes an update beyond float16's range once multiplied with its partner.
MAX_ABS_WEIGHT = 1e4


class UnsupportedAdapter(ValueError):
    """A PEFT adapter using features a LoRA composition cannot represent; names the adapter and each feature."""

    def __init__(self, adapter: str, features: dict[str, str]) -> None:
        self.adapter, self.features = adapter, list(features)
        self.reason = "; ".join(f"{f} ({why}) is not supported" for f, why in features.items()) + f"; {PLAIN}"
        super().__init__(f"adapter '{adapter}': {self.reason}")


def _modules(keys: list[str], marker: str) -> str:
    names = sorted({k.split(marker)[0].removeprefix(PREFIX).rstrip(".") for k in keys})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def unsupported_features(config: dict[str, Any], keys: list[str]) -> dict[str, str]:
    """{feature: why} for what in an adapter's config or weight names is more than plain LoRA factors."""
    from peft import LoraConfig

    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        return {f"PEFT type {config.get('peft_type')}": "not LoRA, so there are no A/B factors to compose"}
    out: dict[str, str] = {}
    other = [k for k in keys if not _KEY.fullmatch(k)]
    dora = [k for k in other if "lora_magnitude_vector" in k]
    if config.get("use_dora") or dora:
        out["DoRA"] = ("use_dora: a learned magnitude vector renormalises each adapted weight, so its update is "
                       "not scaling * B @ A")
    if emb := [k for k in other if ".lora_embedding_" in k]:
        out["embedding LoRA"] = (f"LoRA on embedding layer {_modules(emb, '.lora_embedding_')}: "
                                 "lora_embedding_A/B add to looked-up token rows, not to a Linear layer's output")
    if config.get("modules_to_save"):
        out["modules_to_save"] = (f"modules_to_save {config['modules_to_save']}: trained full copies of these modules "
                                  "replace the base model's, outside the LoRA factors")
    if config.get("bias") not in (None, "none"):
        out[f"bias={config['bias']!r}"] = "trained bias vectors outside the LoRA factors"
    if config.get("lora_bias") or any(re.search(r"\.lora_[AB](\.[^.]+)?\.bias$", k) for k in other):
        out["lora_bias"] = "a trained bias on lora_B adds a constant outside scaling * B @ A"
    if config.get("trainable_token_indices") or any("trainable_tokens" in k for k in other):
        out["trainable_token_indices"] = "trained embedding rows outside the LoRA factors"
    if config.get("layer_replication"):
        out["layer_replication"] = "the adapter is for a model with repeated layers, not for the base model"
    if config.get("target_parameters"):
        out["target_parameters"] = "LoRA on raw parameters (such as MoE experts), not on Linear layers"
    if config.get("use_qalora"):
        out["QALoRA"] = "use_qalora: the LoRA input is pooled in groups before lora_A"
    for f in dataclasses.fields(LoraConfig):
        if f.metadata.get("is_lora_variant") and f.name not in _SAME_FORWARD_VARIANTS | {"use_dora"} \
                and config.get(f.name):
            out[f"LoRA variant {f.name}"] = "its forward is not scaling * B @ A"
    if other and not out:  # e.g. a resized embedding saved beside the factors
        more = f" and {len(other) - 1} more" if len(other) > 1 else ""
        out["weights besides the LoRA factors"] = f"{other[0]}{more}, which a LoRA composition would drop"
    return out


def read_lora_factors(adapter_dir: str | Path, device: str | torch.device = "cpu", *, name: str | None = None,
                      ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
    """({module name: (A, B)}, {module name: scaling}).

    scaling = alpha / r per module, with PEFT's `rank_pattern` / `alpha_pattern` overrides, and
    alpha / sqrt(r) under `use_rslora`. Raises `UnsupportedAdapter` (a ValueError naming `name`, by default
    the directory, and the feature) for a non-LoRA adapter or one that is more than LoRA factors (DoRA,
    embedding LoRA, modules_to_save, biases, LoRA variants), and ValueError for missing weights or an
    unpaired factor.
    """
    from peft import LoraConfig
    from peft.utils import load_peft_weights
    from peft.utils.other import get_pattern_key

    adapter_dir = Path(adapter_dir)
    label = name or str(adapter_dir)
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json)")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{label}: adapter_config.json is not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{label}: adapter_config.json is not a JSON object")
    if str(raw.get("peft_type", "")).upper() != "LORA":
        raise UnsupportedAdapter(label, unsupported_features(raw, []))
    try:
        config = LoraConfig.from_pretrained(str(adapter_dir))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{label}: not a LoRA adapter config ({err})") from None
    weights = load_peft_weights(str(adapter_dir), device=str(device))
    if features := unsupported_features(raw, list(weights)):
        raise UnsupportedAdapter(label, features)
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        m = _KEY.fullmatch(key)
        if m:
            halves.setdefault(m.group(1).removeprefix(PREFIX), {})[m.group(2)] = tensor
    if not halves:
        raise ValueError(f"{label}: no LoRA weights (lora_A / lora_B) in the adapter")
    factors, scaling = {}, {}
    for module, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{label}: module {module} lacks lora_{'B' if 'A' in ab else 'A'}")
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(f"{label}: module {module}: factor shapes {tuple(a.shape)} and {tuple(b.shape)} "
                             "are not a LoRA pair (A [r, in], B [out, r])")
        # PEFT's own lookup (LoraModel._create_and_replace): first matching pattern key, else the default
        r = config.rank_pattern.get(get_pattern_key(config.rank_pattern, module), config.r) \
            if config.rank_pattern else config.r
        if r != a.shape[0]:
            raise ValueError(f"{label}: module {module} has rank {a.shape[0]} but the config says {r}")
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern, module), config.lora_alpha) \
            if config.alpha_pattern else config.lora_alpha
        scaling[module] = alpha / (math.sqrt(r) if config.use_rslora else r)
        factors[module] = (a, b)
    return factors, scaling
