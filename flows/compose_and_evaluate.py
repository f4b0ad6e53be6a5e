"""compose_and_evaluate: for one target task, filter candidates, compose with each configured method,
and evaluate every composed adapter beside the baselines (zero-shot, ICL, DATA-MIX).

    python -m flows.compose_and_evaluate configs/demo.yaml 0
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from flows._common import resolve_config
from lorasoup_core.compose import COMPOSERS
from lorasoup_core.experiment import TargetResult
from lorasoup_core.registry import AdapterVersion
from lorasoup_core.tracking import RunContext
from tasks.compose import (
    candidate_data,
    compose_adapter,
    draw_shots,
    evaluate_method,
    load_target,
    pool_candidates,
    register_composed,
    select_candidates,
)
from tasks.pool import resolve_base


# Results persist: an experiment running this flow as a deployment (remote) reads them back.
@flow(name="compose-and-evaluate", log_prints=True, persist_result=True)
def compose_and_evaluate(config: str | dict[str, Any], target_index: int = 0, parent_run_id: str | None = None,
                         datamix: AdapterVersion | None = None, seed: int | None = None) -> TargetResult:
    """Results rows, weights and objective traces for `config.targets[target_index]` under one seed (default
    the config's); `datamix` is the registered DATA-MIX adapter when that baseline is configured."""
    cfg = resolve_config(config)
    seed = cfg.seed if seed is None else seed
    key = "" if not cfg.seeds else f"@{seed}"  # weights and traces per seed when there are several
    log = get_run_logger()
    run = RunContext(cfg.experiment_name, cfg.tracking.tracking_uri, parent_run_id)
    base = resolve_base(cfg.model)
    target_cfg = cfg.targets[target_index]
    target = load_target(target_cfg.task)
    shots = draw_shots(target, target_cfg.shots, seed)

    candidates = pool_candidates(base, cfg.pool.task_names, cfg.storage, run)
    selection = select_candidates(base, candidates, target, shots, cfg.selection, seed)
    for line in selection.log:
        log.info("selection: %s", line)

    result = TargetResult(target.name, target.fingerprint, rows=[], seed=seed, selection=dict(selection.scores))
    subjects: list[tuple[str, str, AdapterVersion | None]] = []
    # the candidates' own training data, for methods that train on it (CAT); not loaded when none does
    needs_data = any(COMPOSERS.get(cfg.composer_of(m)).needs_train_data for m in cfg.methods)
    train_data = candidate_data(cfg.pool, [c.name for c in selection.candidates]) if needs_data else {}
    for name in cfg.methods:
        composed = compose_adapter(base, selection.candidates, target, shots, name, cfg.composer_of(name),
                                   cfg.settings(name), seed, train_data, run)
        version = register_composed(composed, cfg.storage, run)
        result.adapters[name] = version
        result.weights[f"{target.name}/{name}{key}"] = composed.weights
        if composed.trace:
            result.traces[f"{target.name}/{name}{key}"] = composed.trace
        subjects.append((name, "adapter", version))
    for baseline in cfg.eval.baselines:
        if baseline == "datamix":
            if datamix is None:
                raise ValueError("the datamix baseline needs the DATA-MIX adapter; run through the experiment flow")
            subjects.append(("datamix", "adapter", datamix))
        else:
            subjects.append((baseline, baseline, None))
    for label, mode, adapter in subjects:
        report = evaluate_method(base, target, shots, label, mode, adapter, cfg.eval, seed, cfg.storage)
        result.rows.append(report.rows[0])
        result.scores[label] = [p["score"] for p in report.predictions[target.name]]
        result.throughput[label] = dict(report.throughput)
    return result


if __name__ == "__main__":
    print(compose_and_evaluate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
