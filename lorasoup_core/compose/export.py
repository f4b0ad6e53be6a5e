"""Export a composition as a plain PEFT LoRA directory (+ a lorasoup card with its lineage).

The directory is meant for tools other than lorasoup (PEFT's AutoPeftModel, lm-evaluation-harness, vLLM):
`base_model_name_or_path` names something Hugging Face resolves (not a lorasoup preset), and `svd_rank`
caps the rank (a composition of k rank-r candidates has rank k*r, above vLLM's default max LoRA rank 16).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig, TaskType
from safetensors.torch import save_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.adapters.factors import PREFIX
from lorasoup_core.compose.base import Composition, Factors
from lorasoup_core.fingerprint import sha256_json
from lorasoup_core.models import LoadedModel

log = logging.getLogger(__name__)
BaseRef = Literal["path", "hub_id"]


def base_reference(base: LoadedModel, base_ref: BaseRef | None = None) -> tuple[str, str]:
    """What `base_model_name_or_path` names, and which kind it is ("path", "hub_id" or "spec").

    Default: the HF directory the weights were loaded from (exactly the weights the adapter was made on,
    and offline), else the hub id, else lorasoup's spec (a tiny preset has neither). For the smollm2
    preset the hub id names the full-precision weights the embedded Q4_1 GGUF was quantized from.
    """
    if base_ref not in (None, "path", "hub_id"):
        raise ValueError(f"base_ref must be 'path' or 'hub_id', got {base_ref!r}")
    found = {"path": base.hf_path, "hub_id": base.hub_id}
    if base_ref is not None:
        if not found[base_ref]:
            raise ValueError(f"base {base.spec!r} has no known {base_ref.replace('_', ' ')}: export with "
                             f"base_ref={'hub_id' if base_ref == 'path' else 'path'!r} or leave it unset")
        return found[base_ref], base_ref
    for kind in ("path", "hub_id"):
        if found[kind]:
            return found[kind], kind
    log.warning("base %r has no HF directory or hub id: adapter_config.json names it by its lorasoup spec, "
                "which only lorasoup resolves", base.spec)
    return base.spec, "spec"


def _truncated(a: torch.Tensor, b: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Best rank-`rank` factors of delta = B @ A, with ||delta - B'A'||^2 and ||delta||^2 (float64).

    QR of both factors leaves an R x R core whose SVD is delta's: the dense [out, in] delta is never
    formed. sqrt(s) goes on each side to keep both factors' ranges balanced for bf16/fp16 serving.
    """
    qb, rb = torch.linalg.qr(b.double())  # B = Qb Rb
    qa, ra = torch.linalg.qr(a.double().T)  # A^T = Qa Ra
    u, s, vh = torch.linalg.svd(rb @ ra.T, full_matrices=False)  # delta = (Qb u) diag(s) (vh Qa^T)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    new_b = (qb @ u[:, :k]) * root
    new_a = root[:, None] * (vh[:k] @ qa.T)
    return new_a, new_b, float(s[k:].square().sum()), float(s.square().sum())


def cap_rank(factors: Factors, rank: int) -> tuple[Factors, dict[str, float], float]:
    """Each module's delta truncated by SVD to at most `rank`, zero-padded to one rank for all modules
    (no rank_pattern: the plainest LoRA for other tools); the relative Frobenius truncation error per
    module, ||delta - delta_k|| / ||delta||, and overall (every module's delta as one vector)."""
    if rank < 1:
        raise ValueError(f"svd_rank must be >= 1, got {rank}")
    out: Factors = {}
    errors: dict[str, float] = {}
    dropped_all = total_all = 0.0
    for m, (a, b) in factors.items():
        a, b = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
        if a.shape[0] <= rank:  # already within the cap: exact, no SVD
            dropped, total = 0.0, float(((b.T @ b) * (a @ a.T)).sum())  # ||B A||_F^2 from the small Gram matrices
        else:
            a, b, dropped, total = _truncated(a, b, rank)
        out[m] = (a, b)
        errors[m] = (dropped / total) ** 0.5 if total > 0 else 0.0
        dropped_all, total_all = dropped_all + dropped, total_all + total
    r = max(a.shape[0] for a, _ in out.values())
    out = {m: (torch.nn.functional.pad(a, (0, 0, 0, r - a.shape[0])), torch.nn.functional.pad(b, (0, r - b.shape[1])))
           for m, (a, b) in out.items()}
    return out, errors, (dropped_all / total_all) ** 0.5 if total_all > 0 else 0.0


def export_peft(comp: Composition, out_dir: str | Path, svd_rank: int | None = None, label: str | None = None,
                base_ref: BaseRef | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that `PeftModel.from_pretrained` (and
    `AutoPeftModelForCausalLM.from_pretrained(out_dir)`) loads.

    Scaling is folded into B and lora_alpha = r, so PEFT's alpha / r is 1 and the delta is exact;
    `svd_rank` caps the rank by truncated SVD of each module's delta (the errors go to the card:
    lineage["export"], metrics["export_truncation_error"]). `base_ref` picks what adapter_config.json
    names as the base (see `base_reference`); the card keeps lorasoup's spec, the path and the hub id.
    The adapter is named `<target>-<label>` (label: the method's name in an experiment, default the composer's).
    """
    label = label or comp.method
    ref, ref_kind = base_reference(comp.base, base_ref)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    factors = comp.factors
    export: dict = {"base_ref": ref_kind, "base_model_name_or_path": ref, "svd_rank": svd_rank}
    metrics = {} if comp.few_shot_loss is None else {"few_shot_loss": comp.few_shot_loss}
    if svd_rank is not None:
        factors, errors, overall = cap_rank(factors, svd_rank)
        export |= {"truncation_error": overall, "truncation_error_max": max(errors.values()),
                   "truncation_error_per_module": errors}
        metrics["export_truncation_error"] = overall
    ranks = {m: a.shape[0] for m, (a, _) in factors.items()}
    r = max(ranks.values())
    export["rank"] = r
    pattern = {re.escape(m): k for m, k in ranks.items() if k != r}  # PEFT reads the keys as regexes
    targets = sorted({m.rsplit(".", 1)[-1] for m in factors})
    config = LoraConfig(r=r, lora_alpha=r, target_modules=targets, rank_pattern=pattern,
                        alpha_pattern=dict(pattern), base_model_name_or_path=ref,
                        task_type=TaskType.CAUSAL_LM if comp.base.kind == "causal" else TaskType.SEQ_2_SEQ_LM)
    config.save_pretrained(str(out))
    tensors = {}
    for m, (a, b) in factors.items():
        tensors[f"{PREFIX}{m}.lora_A.weight"] = a.detach().to("cpu", torch.float32).contiguous()
        tensors[f"{PREFIX}{m}.lora_B.weight"] = b.detach().to("cpu", torch.float32).contiguous()
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    AdapterCard(
        name=f"{comp.target.name}-{label}", task=comp.target.name, base_model=comp.base.spec,
        base_model_path=comp.base.hf_path, base_model_hub_id=comp.base.hub_id,
        base_fingerprint=comp.base.fingerprint,
        data_fingerprint=sha256_json([comp.target.fingerprint, [[s.input, s.target] for s in comp.shots]]),
        # base_ref stays out: it changes where other tools look for the base, not the adapter
        config_fingerprint=sha256_json([comp.method, comp.settings.model_dump(mode="json"), comp.seed, comp.names,
                                        comp.versions, svd_rank, comp.train_fingerprints]),
        training={**comp.settings.model_dump(mode="json"), "seed": comp.seed},
        metrics=metrics, rank=r, alpha=float(r), target_modules=targets, origin="composed",
        lineage={"method": comp.method, "label": label, "candidates": comp.names, "versions": comp.versions,
                 "weights": comp.weights, "svd_rank": svd_rank, "export": export},
    ).write(out)
    return out
