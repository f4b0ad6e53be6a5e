"""Compose-and-evaluate steps: candidates from the registry, selection, composition, evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasoup_core import tracking
from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, ComposeConfig, compose, export_peft
from lorasoup_core.config import ModelConfig
from lorasoup_core.data import Example, Task
from lorasoup_core.experiment.config import EvalSection, SelectionSection
from lorasoup_core.experiment.pool_steps import version_dict
from lorasoup_core.experiment.steps import fingerprint, shared_base, work_dir
from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.selection import select_candidates


def pool_versions(reg: AdapterRegistry, model: ModelConfig, task_names: list[str]) -> list[dict[str, Any]]:
    """The registered adapters of this pool on this base model (latest version of each task)."""
    base = shared_base(model)
    latest: dict[str, Any] = {}
    for v in reg.list(base_model=base.spec):
        if v.base_fingerprint != base.fingerprint or v.origin == "composed" or v.task not in task_names:
            continue
        if v.task not in latest or int(v.version) > int(latest[v.task].version):
            latest[v.task] = v
    missing = sorted(set(task_names) - set(latest))
    if missing:
        raise LookupError(f"no registered adapter on {base.spec} for pool task(s): {', '.join(missing)}; "
                          "run the pool first")
    return [version_dict(latest[t]) for t in task_names]


def download(reg: AdapterRegistry, versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Local copies of the candidates (cached by store URI; downloads verify digests)."""
    out = []
    for v in versions:
        dest = work_dir("candidates", fingerprint(v["store_uri"])[:16])
        if not (dest / "adapter_config.json").is_file():
            reg.download(reg.get(f"{v['name']}/{v['version']}"), dest)
        out.append({"name": v["task"], "path": str(dest), "version": f"{v['name']}/{v['version']}"})
    return out


def _candidates(items: list[dict[str, Any]]) -> list[Candidate]:
    return [Candidate(name=c["name"], path=Path(c["path"]), card=AdapterCard.read(c["path"]), version=c["version"])
            for c in items]


def select(model: ModelConfig, items: list[dict[str, Any]], target: Task, shots: list[Example],
           selection: SelectionSection, seed: int) -> dict[str, Any]:
    from lorasoup_core.selection import FilterSpec

    chain = [FilterSpec(name=f, k=selection.k, seed=seed) for f in selection.filters]
    sel = select_candidates(shared_base(model), _candidates(items), target, shots, chain, selection.k)
    chosen = {c.name for c in sel.candidates}
    return {"candidates": [c for c in items if c["name"] in chosen], "scores": dict(sel.scores), "log": list(sel.log)}


def compose_target(model: ModelConfig, items: list[dict[str, Any]], target: Task, shots: list[Example],
                   method: str, config: ComposeConfig, *, experiment: str, parent_run_id: str | None,
                   tracking_uri: str | None) -> dict[str, Any]:
    """Compose, export as a plain PEFT directory, and log the search in a nested MLflow run."""
    base = shared_base(model)
    key = fingerprint(base.fingerprint, target.fingerprint, [s.input for s in shots],
                      [c["version"] for c in items], method, config)
    out = work_dir("composed", f"{target.name}-{method}-{key[:12]}")
    with tracking.run(experiment, f"compose {target.name} {method}", parent_run_id=parent_run_id,
                      tracking_uri=tracking_uri,
                      tags={"lorasoup.step": "compose", "lorasoup.task": target.name, "lorasoup.method": method}) as rid:
        tracking.log_params(rid, {"method": method, "candidates": [c["version"] for c in items],
                                  **config.model_dump(mode="json")}, tracking_uri)
        comp = compose(method, base, _candidates(items), target, shots, config)
        export_peft(comp, out)
        weights = _weights_by_adapter(comp)
        tracking.log_metrics(rid, {f"weight/{n}": w for n, w in weights.items()}, tracking_uri=tracking_uri)
        if comp.trace:
            tracking.log_series(rid, "objective", [float(x) for x in comp.trace], tracking_uri)
    return {"method": method, "dir": str(out), "weights": weights, "trace": [float(x) for x in comp.trace],
            "run_id": rid}


def _weights_by_adapter(comp: Any) -> dict[str, float]:
    """One number per adapter for tables and heat maps (per-module weights are averaged)."""
    w = comp.weights
    if isinstance(w, dict):
        import numpy as np

        return {n: float(np.mean([float(v[i]) for v in w.values()])) for i, n in enumerate(comp.names)}
    return {n: float(x) for n, x in zip(comp.names, w, strict=True)}


def evaluate(model: ModelConfig, target: Task, mode: str, adapter_dir: str | None, shots: list[Example],
             eval_cfg: EvalSection, label: str, seed: int) -> dict[str, Any]:
    """Score one method or baseline on the target's test split, never on the fitting shots."""
    from lorasoup_core.bench import evaluate_task

    report = evaluate_task(shared_base(model), target, mode=mode, adapter=adapter_dir, limit=eval_cfg.limit,
                           k_shot=eval_cfg.k_shot, exclude={target.name: {s.input for s in shots}}, seed=seed,
                           batch_size=eval_cfg.batch_size, method_label=label)
    row = report.rows[0]
    return {"row": row.to_dict(), "throughput": dict(report.throughput)}
