"""What a registered adapter says about itself in MLflow's Models page: tags on the registered model (searchable:
`tags.task = ...`, `tags.method = ...`), tags on each version (fingerprints, store key, metrics, lineage in
readable form) and descriptions in words."""

from __future__ import annotations

import json
from typing import Any

from lorasoup_core.adapters.card import AdapterCard
from lorasoup_core.storage import Artifact

FINGERPRINTS = ("base_fingerprint", "data_fingerprint", "config_fingerprint")


def version_tags(card: AdapterCard, artifact: Artifact, store_root: str) -> dict[str, str]:
    tags = {"task": card.task, "adapter": card.name, "base_model": card.base_model, "rank": str(card.rank),
            "targets": ",".join(sorted(card.target_modules)), "store_uri": artifact.uri, "origin": card.origin,
            "store_key": artifact.key, "store_root": store_root, **{k: getattr(card, k) for k in FINGERPRINTS}}
    for k, v in card.metrics.items():
        if isinstance(v, (int, float)):
            tags[f"metric.{k}"] = repr(float(v))
    if card.lineage:
        tags["lineage"] = json.dumps(card.lineage, default=str)[:5000]
        tags |= lineage_tags(card.lineage)
    return tags


def _method(lineage: dict[str, Any]) -> str:
    """The method a composition is registered under: its variant label (lorahub-cma), else the composer."""
    return str(lineage.get("label") or lineage.get("method") or "")


def lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """The lineage as tags a person reads in MLflow's UI (and can search by): method, candidate versions,
    the largest weights."""
    out = {"lineage.method": _method(lineage)}
    versions = [v for v in lineage.get("versions") or [] if v]
    out["lineage.candidates"] = ", ".join(versions or lineage.get("candidates") or [])[:5000]
    weights = lineage.get("weights") or []
    names = lineage.get("candidates") or []
    if isinstance(weights, dict) and weights:  # per module (CAT): the mean over modules, as in the weights plot
        weights = [sum(float(v[i]) for v in weights.values()) / len(weights) for i in range(len(names))]
    if weights and len(weights) == len(names):
        ranked = sorted(zip(names, weights, strict=True), key=lambda nw: -abs(float(nw[1])))
        out["lineage.weights"] = ", ".join(f"{n} {float(w):+.3f}" for n, w in ranked)[:5000]
    return {k: v for k, v in out.items() if v}


def describe(card: AdapterCard, artifact: Artifact) -> tuple[str, str]:
    """(registered model description, version description) in words."""
    lineage = card.lineage or {}
    if card.origin == "composed":
        method = _method(lineage) or "composed"
        model = (f"{method} compositions for {card.task} on {card.base_model}, made by lorasoup from the adapter "
                 f"pool (one version per shots, candidates, settings and seed).")
        top = lineage_tags(lineage).get("lineage.weights", "")
        version = (f"{method} of {len(lineage.get('candidates') or [])} adapters for {card.task}"
                   + (f"; largest weights: {top[:300]}" if top else ""))
    elif card.origin == "tuned":
        what = {"lora": "LoRA", "ia3": "IA3 adapter", "full": "full fine-tune"}[card.kind]
        choice = (card.lineage or {}).get("choice") or {}
        model = (f"{what}s tuned for {card.task} on {card.base_model} on a target's few shots by "
                 f"{_method(lineage) or 'a few-shot method'}.")
        version = (f"{what} tuned for {card.task}, {card.metrics.get('trainable_params', 0):,.0f} trained parameters, "
                   f"lr {choice.get('lr')} and {choice.get('steps')} steps chosen on held-out shots")
    else:
        model = (f"LoRA adapters for {card.task} on {card.base_model} ({card.origin}); alias `champion` is the "
                 f"version with the lowest validation loss.")
        loss = card.metrics.get("val_loss")
        version = f"{card.origin} LoRA for {card.task}, rank {card.rank}" + (
            f", val_loss {float(loss):.4f}" if isinstance(loss, (int, float)) else "")
    return model, f"{version}; files {artifact.key} (sha256 {artifact.sha256[:16]})"


def model_tags(card: AdapterCard) -> dict[str, str]:
    """Tags on the registered model itself: what MLflow's Models page can search (`tags.task = ...`)."""
    tags = {"task": card.task, "base_model": card.base_model, "origin": card.origin, "adapter": card.name}
    if card.origin in ("composed", "tuned"):
        tags["method"] = _method(card.lineage or {})
    return {k: v for k, v in tags.items() if v}
