"""compose_and_evaluate: for one target task, filter candidates, compose with each configured method,
and evaluate every composed adapter beside the baselines (zero-shot, ICL, DATA-MIX).

    python -m flows.compose_and_evaluate configs/demo.yaml 0
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from flows._common import link_mlflow_run, prefect_links, resolve_config
from lorasoup_core.compose import COMPOSERS
from lorasoup_core.experiment import TargetResult
from lorasoup_core.experiment.runs import log_evaluation
from lorasoup_core.pool.hub import pool_task_names
from lorasoup_core.registry import AdapterVersion
from lorasoup_core.tracking import RunContext
from tasks.compose import (
    candidate_data,
    compose_adapter,
    draw_shots,
    evaluate_method,
    load_target,
    pool_candidates,
    record_score,
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
    run = RunContext(cfg.experiment_name, cfg.tracking.tracking_uri, parent_run_id, cfg.storage.uri)
    base = resolve_base(cfg.model)
    link_mlflow_run(parent_run_id, cfg.tracking.tracking_uri)
    target_cfg = cfg.targets[target_index]
    target = load_target(target_cfg.task)
    shots = draw_shots(target, target_cfg.shots, seed)

    candidates = pool_candidates(base, pool_task_names(cfg), cfg.storage, run)  # trained + imported (hub_pool)
    # one selection per distinct selection config (variants may compare filters at the same k)
    selections: dict[str, Any] = {}
    for name in [None, *cfg.methods]:
        sel = cfg.selection if name is None else cfg.selection_of(name)
        sel_key = sel.model_dump_json()
        if sel_key not in selections:
            selections[sel_key] = select_candidates(base, candidates, target, shots, sel, seed)
            for line in selections[sel_key].log:
                log.info("selection %s: %s", "+".join(sel.filters), line)
    default = selections[cfg.selection.model_dump_json()]

    result = TargetResult(target.name, target.fingerprint, rows=[], seed=seed, selection=dict(default.scores))
    subjects: list[tuple[str, str, AdapterVersion | None]] = []
    compose_seconds: dict[str, float] = {}
    chosen_of = {name: selections[cfg.selection_of(name).model_dump_json()].candidates for name in cfg.methods}
    # the candidates' own training data, for methods that train on it (CAT); not loaded when none does. Only
    # such a composer gets it (and has it in its cache key): adding or removing CAT must not recompute lorahub
    trains = {name for name in cfg.methods if COMPOSERS.get(cfg.composer_of(name)).needs_train_data}
    train_names = sorted({c.name for name in trains for c in chosen_of[name]})
    all_data = candidate_data(cfg.pool, train_names) if train_names else {}
    for name in cfg.methods:
        chosen = chosen_of[name]
        train_data = {c.name: all_data[c.name] for c in chosen} if name in trains else {}
        composed = compose_adapter(base, chosen, target, shots, name, cfg.composer_of(name),
                                   cfg.settings(name), seed, train_data, run)
        version = register_composed(composed, cfg.storage, run)
        compose_seconds[name] = composed.seconds
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
    links = prefect_links()
    for label, mode, adapter in subjects:
        report = evaluate_method(base, target, shots, label, mode, adapter, cfg.eval, seed, cfg.storage)
        # a nested MLflow run per evaluation, also when the score came from the cache
        eval_run_id = log_evaluation(run, target, label, seed, report, adapter, links)
        if adapter is not None:
            record_score(adapter, target.name, report, eval_run_id, cfg.storage, run)
        result.rows += report.rows  # the main metric, then companions such as '<label>/mc'
        preds = report.predictions[target.name]
        result.scores[label] = [p["score"] for p in preds]
        for row in report.rows[1:]:
            metric = row.method.rpartition("/")[2]
            result.scores[row.method] = [p[metric] for p in preds]
        result.throughput[label] = dict(report.throughput)
        if label in compose_seconds:
            result.throughput[label]["compose_seconds"] = compose_seconds[label]
    return result


if __name__ == "__main__":
    print(compose_and_evaluate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
