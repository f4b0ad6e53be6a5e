"""Compose for a target: run a composer on the candidates, export a plain PEFT directory, and log the
fit (settings, weights, objective per evaluation) in an MLflow run."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoup_core import tracking
from lorasoup_core.adapters import slug
from lorasoup_core.compose import Candidate, ComposerSettings, compose, export_peft, settings_for
from lorasoup_core.data import Example, Task
from lorasoup_core.fingerprint import cache_key
from lorasoup_core.models import LoadedModel
from lorasoup_core.settings import get_settings
from lorasoup_core.tracking import RunContext


@dataclass
class ComposedAdapter:
    target: str
    method: str  # the composer
    label: str  # its name in the experiment (a variant's name, or the composer's)
    adapter_dir: Path  # a plain PEFT directory with its lorasoup card (lineage)
    weights: dict[str, float]  # one per candidate (per-module weights averaged)
    trace: list[float] = field(default_factory=list)  # objective per evaluation / step
    few_shot_loss: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the MLflow run of the fit
    seconds: float = 0.0  # wall time of the composition (the composer's fit and the export)


def compose_for_target(base: LoadedModel, candidates: list[Candidate], target: Task, shots: list[Example],
                       method: str, settings: ComposerSettings | dict[str, Any] | None, run: RunContext, *,
                       seed: int = 0, out_dir: str | Path | None = None,
                       train_data: dict[str, Task] | None = None, label: str | None = None,
                       export_rank: int | None = None, base_ref: str | None = None) -> ComposedAdapter:
    """Compose `candidates` for `target` on `shots` and export the result (into `out_dir`, or a work
    directory named by everything the result depends on and the composition's run); `label` names a
    method variant; `export_rank` caps the exported LoRA's rank by SVD (serving stacks with a max LoRA
    rank); `base_ref` ('path' or 'hub_id') picks what the adapter names as its base."""
    settings = settings_for(method, settings)
    label = label or method
    export = [export_rank, base_ref] if export_rank or base_ref else []  # unchanged keys without them
    key = cache_key(base.fingerprint, target, shots, candidates, method, settings, seed, train_data or {}, *export)
    # slugged: whatever the target and the label are called, the work directory stays under LORASOUP_HOME
    work = get_settings().home / "work" / "composed" / f"{slug(target.name)[:40]}-{slug(label)[:30]}-{key[:12]}"
    tags = {"lorasoup.step": "compose", "lorasoup.task": target.name, "lorasoup.method": label,
            "lorasoup.composer": method}
    with tracking.run(run.experiment, f"compose {target.name} {label}", parent_run_id=run.parent_run_id,
                      tracking_uri=run.tracking_uri, tags=tags, store_uri=run.store_uri,
                      system_metrics=True) as run_id:
        tracking.log_params(run_id, {"method": method, "seed": seed, "candidates": [c.version or c.name
                                                                                    for c in candidates],
                                     **settings.model_dump(mode="json")}, run.tracking_uri)
        # one directory per composition run: two runs composing the same cell at once never write (or
        # publish from) each other's files
        out = Path(out_dir) if out_dir else work / (run_id or uuid.uuid4().hex)
        start = time.perf_counter()
        comp = compose(method, base, candidates, target, shots, settings, seed=seed, train_data=train_data)
        export_peft(comp, out, svd_rank=export_rank, label=label, base_ref=base_ref)
        seconds = time.perf_counter() - start
        weights = comp.weights_by_adapter()
        metrics = {f"weight/{n}": w for n, w in weights.items()} | {"compose_seconds": seconds}
        if comp.few_shot_loss is not None:
            metrics["few_shot_loss"] = comp.few_shot_loss
        tracking.log_metrics(run_id, metrics, tracking_uri=run.tracking_uri)
        if comp.trace:
            tracking.log_series(run_id, "objective", [float(x) for x in comp.trace], run.tracking_uri)
    return ComposedAdapter(target.name, method, label, out, weights, [float(x) for x in comp.trace], comp.few_shot_loss,
                           dict(comp.diagnostics), run_id, seconds)
