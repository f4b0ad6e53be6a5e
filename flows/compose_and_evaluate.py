"""compose_and_evaluate: for one target task, filter candidates, compose with each configured method,
and evaluate every composed adapter beside the baselines (zero-shot, ICL, DATA-MIX).

    python -m flows.compose_and_evaluate configs/demo.yaml 0
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from flows._common import resolve_config
from lorasoup_core.experiment.steps import task_name
from tasks.compose import (
    compose_adapter,
    draw_shots,
    evaluate,
    pool_candidates,
    register_composed,
    select_candidates,
)
from tasks.pool import load_task_data


# Results persist: an experiment running this flow as a deployment (remote) reads them back.
@flow(name="compose-and-evaluate", log_prints=True, persist_result=True)
def compose_and_evaluate(config: str | dict[str, Any], target_index: int = 0, parent_run_id: str | None = None,
                         datamix: dict[str, Any] | None = None) -> dict[str, Any]:
    """Results rows, weights and objective traces for `config.targets[target_index]`.

    `datamix` is the registered DATA-MIX adapter ({"uri"}: its store URI, readable from any worker) when that
    baseline is configured.
    """
    cfg = resolve_config(config)
    log = get_run_logger()
    storage, tracking_uri, seed = cfg.storage.uri, cfg.tracking.tracking_uri, cfg.seed
    target_cfg = cfg.targets[target_index]
    target = load_task_data(target_cfg.task)
    shots = draw_shots(target, target_cfg.shots, seed)

    pool = pool_candidates(storage, tracking_uri, cfg.model, [task_name(s) for s in cfg.pool.tasks])
    selected = select_candidates(cfg.model, pool, target, shots, cfg.selection, seed)
    for line in selected["log"]:
        log.info("selection: %s", line)

    rows, weights, traces, adapters = [], {}, {}, {}
    for method in cfg.methods:
        composed = compose_adapter(cfg.model, selected["candidates"], target, shots, method, cfg.compose,
                                   cfg.experiment_name, parent_run_id, tracking_uri)
        version = register_composed(storage, tracking_uri, composed)
        adapters[method] = version
        weights[f"{target.name}/{method}"] = composed["weights"]
        if composed["trace"]:
            traces[f"{target.name}/{method}"] = composed["trace"]
        rows.append(evaluate(cfg.model, target, "adapter", composed["dir"], version["store_uri"], shots, cfg.eval,
                             method, seed))
    for baseline in cfg.eval.baselines:
        if baseline == "datamix":
            if datamix is None:
                raise ValueError("the datamix baseline needs the DATA-MIX adapter; run through the experiment flow")
            rows.append(evaluate(cfg.model, target, "adapter", datamix["uri"], datamix["uri"], shots, cfg.eval,
                                 "datamix", seed))
        else:
            rows.append(evaluate(cfg.model, target, baseline, None, None, shots, cfg.eval, baseline, seed))
    return {"target": target.name, "rows": [r["row"] for r in rows], "throughput": {r["row"]["method"]: r["throughput"]
            for r in rows}, "weights": weights, "traces": traces, "selection": selected["scores"],
            "adapters": adapters, "data_fingerprint": target.fingerprint}


if __name__ == "__main__":
    print(compose_and_evaluate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
