"""train_pool: plan the pool (what the registry has), then ensure each missing adapter (threads, or a
Dask cluster), each publishing and registering its adapter where it was trained.

    python -m flows.train_pool configs/pool_skills.yaml     (or an experiment YAML: its pool)
"""

# ruff: noqa: E402 - Prefect is imported after its home is chosen (use_prefect_home)
from __future__ import annotations

import sys
from typing import Any

from lorasoup_core.settings import use_prefect_home

use_prefect_home()  # before Prefect is imported: a LORASOUP_HOME of its own gets a Prefect home of its own

from prefect import flow, get_run_logger

from flows._common import chunks, resolve_pool_file
from lorasoup_core.pool import PoolFile, PoolResult
from lorasoup_core.tracking import RunContext
from tasks.pool import ensure_adapter, plan_pool, resolve_base


# Results persist: an experiment running this flow as a deployment (remote) reads them back.
@flow(name="train-pool", log_prints=True, persist_result=True)
def train_pool(config: str | dict[str, Any] | PoolFile, parent_run_id: str | None = None) -> PoolResult:
    """Make sure every task of the config's pool has a registered adapter; returns the versions by task
    and which ones were trained now."""
    cfg = resolve_pool_file(config)
    log = get_run_logger()
    run = RunContext(cfg.experiment_name, cfg.tracking.tracking_uri, parent_run_id, cfg.storage.uri)
    base = resolve_base(cfg.model)
    plan = plan_pool(cfg.pool, base, cfg.storage, run)
    log.info("pool: %d tasks, %d registered, %d to train", len(plan.adapters),
             len(plan.adapters) - len(plan.missing), len(plan.missing))
    ensured = {}
    for wave in chunks(plan.missing, cfg.pool.concurrency):
        futures = [ensure_adapter.submit(base, a.task, a.training, cfg.storage, run, cfg.pool.embed_examples)
                   for a in wave]
        for item, fut in zip(wave, futures, strict=True):
            ensured[item.task.name] = fut.result()
    return PoolResult.of(plan, ensured)


if __name__ == "__main__":
    print(train_pool(sys.argv[1]))
