"""compose_and_evaluate: one target cell. For a target under one seed, select candidates, run every
method of the config (composers and baselines), register what yields an adapter, evaluate each.

    python -m flows.compose_and_evaluate configs/demo.yaml 0
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from flows._common import link_mlflow_run, prefect_links, resolve_config
from lorasoup_core.experiment import TargetResult
from lorasoup_core.experiment.cell import cell_of, run_cell
from lorasoup_core.tracking import RunContext
from tasks.compose import PREFECT_STEPS
from tasks.pool import resolve_base


# Results persist: an experiment running this flow as a deployment (remote) reads them back.
@flow(name="compose-and-evaluate", log_prints=True, persist_result=True)
def compose_and_evaluate(config: str | dict[str, Any], target_index: int = 0, parent_run_id: str | None = None,
                         seed: int | None = None) -> TargetResult:
    """Results rows, weights and objective traces for `config.targets[target_index]` under one seed (default
    the config's)."""
    cfg = resolve_config(config)
    run = RunContext(cfg.experiment_name, cfg.tracking.tracking_uri, parent_run_id, cfg.storage.uri)
    base = resolve_base(cfg.model)
    link_mlflow_run(parent_run_id, cfg.tracking.tracking_uri)
    cell = cell_of(cfg, target_index, seed)  # the plan: which selections, data and evaluations
    result = run_cell(cell, base, cfg.storage, run, PREFECT_STEPS, links=prefect_links(), say=get_run_logger().info)
    return result.target_result()


if __name__ == "__main__":
    print(compose_and_evaluate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
