"""retrain_pool: the scheduled job. Retrain only adapters whose data or config changed (the registry
is keyed on fingerprints), move `champion` only when validation improves, and re-run the registered
experiments that depend on a changed adapter.

    lorasoup retrain --config configs/demo.yaml     (deployed nightly by deployments/prefect.yaml)
"""

# ruff: noqa: E402 - Prefect is imported after its home is chosen (use_prefect_home)
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from lorasoup_core.settings import use_prefect_home

use_prefect_home()  # before Prefect is imported: a LORASOUP_HOME of its own gets a Prefect home of its own

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows._common import resolve_pool_file, task_runner
from flows.experiment import experiment
from flows.train_pool import train_pool
from lorasoup_core.experiment.dependents import dependent_experiments
from tasks._policies import IO_RETRIES


@dataclass
class RetrainResult:
    trained: list[str]
    skipped: list[str]
    rerun: list[str] = field(default_factory=list)  # config paths of the experiments run again


@task(cache_policy=NONE, **IO_RETRIES)
def find_dependent_experiments(base_model: str, changed: list[str], tracking_uri: str | None) -> list[str]:
    return dependent_experiments(base_model, changed, tracking_uri)


@flow(name="retrain-pool", log_prints=True)
def retrain_pool(config: str | dict[str, Any], rerun_experiments: bool = True) -> RetrainResult:
    cfg = resolve_pool_file(config)
    log = get_run_logger()
    runner = task_runner(cfg.pool.dask_address, cfg.pool.concurrency)
    pool = train_pool.with_options(task_runner=runner)(config=cfg)
    log.info("retrained %d adapter(s): %s; unchanged: %d", len(pool.trained), pool.trained, len(pool.skipped))
    result = RetrainResult(pool.trained, pool.skipped)
    if rerun_experiments and pool.trained:
        result.rerun = find_dependent_experiments(cfg.model.spec, pool.trained, cfg.tracking.tracking_uri)
        for path in result.rerun:
            log.info("re-running experiment %s", path)
            experiment(config=path)
    return result


if __name__ == "__main__":
    print(retrain_pool(sys.argv[1]))
