"""Export a composition as a plain PEFT LoRA directory (+ a lorasoup card with its lineage)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from peft import LoraConfig, TaskType
from safetensors.torch import save_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.adapters.factors import PREFIX
from lorasoup_core.compose.base import Composition
from lorasoup_core.compose.merges import to_lora
from lorasoup_core.fingerprint import sha256_json


def export_peft(comp: Composition, out_dir: str | Path, svd_rank: int | None = None, label: str | None = None
                ) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that `PeftModel.from_pretrained` loads.

    Scaling is folded into B and lora_alpha = r, so PEFT's alpha / r is 1 and the delta is exact;
    `svd_rank` compresses each module's delta by truncated SVD instead. The adapter is named
    `<target>-<label>` (label: the method's name in an experiment, default the composer's).
    """
    label = label or comp.method
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    factors = comp.factors
    if svd_rank:
        factors = {m: to_lora(b @ a, svd_rank) for m, (a, b) in factors.items()}
    ranks = {m: a.shape[0] for m, (a, _) in factors.items()}
    r = max(ranks.values())
    pattern = {re.escape(m): k for m, k in ranks.items() if k != r}  # PEFT reads the keys as regexes
    targets = sorted({m.rsplit(".", 1)[-1] for m in factors})
    config = LoraConfig(r=r, lora_alpha=r, target_modules=targets, rank_pattern=pattern,
                        alpha_pattern=dict(pattern), base_model_name_or_path=comp.base.spec,
                        task_type=TaskType.CAUSAL_LM if comp.base.kind == "causal" else TaskType.SEQ_2_SEQ_LM)
    config.save_pretrained(str(out))
    tensors = {}
    for m, (a, b) in factors.items():
        tensors[f"{PREFIX}{m}.lora_A.weight"] = a.detach().to("cpu", torch.float32).contiguous()
        tensors[f"{PREFIX}{m}.lora_B.weight"] = b.detach().to("cpu", torch.float32).contiguous()
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    AdapterCard(
        name=f"{comp.target.name}-{label}", task=comp.target.name, base_model=comp.base.spec,
        base_fingerprint=comp.base.fingerprint,
        data_fingerprint=sha256_json([comp.target.fingerprint, [[s.input, s.target] for s in comp.shots]]),
        config_fingerprint=sha256_json([comp.method, comp.settings.model_dump(mode="json"), comp.seed, comp.names,
                                        comp.versions, svd_rank, comp.train_fingerprints]),
        training={**comp.settings.model_dump(mode="json"), "seed": comp.seed},
        metrics={} if comp.few_shot_loss is None else {"few_shot_loss": comp.few_shot_loss},
        rank=r, alpha=float(r), target_modules=targets, origin="composed",
        lineage={"method": comp.method, "label": label, "candidates": comp.names, "versions": comp.versions,
                 "weights": comp.weights, "svd_rank": svd_rank},
    ).write(out)
    return out
