"""train_pool: fingerprint each task, skip what is registered, train the rest (threads, or a Dask cluster),
each publishing and registering its adapter where it was trained.

    python -m flows.train_pool configs/demo.yaml
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from flows._common import chunks, resolve_config
from lorasoup_core.experiment.pool_steps import training_for
from lorasoup_core.experiment.steps import task_name
from tasks.pool import find_adapter, fingerprint_task, load_task_data, train_adapter


# Results persist: an experiment running this flow as a deployment (remote) reads them back.
@flow(name="train-pool", log_prints=True, persist_result=True)
def train_pool(config: str | dict[str, Any], parent_run_id: str | None = None) -> dict[str, Any]:
    """Make sure every task of the config's pool has a registered adapter; returns the versions by task
    and which ones were trained now."""
    cfg = resolve_config(config)
    log = get_run_logger()
    storage, tracking_uri = cfg.storage.uri, cfg.tracking.tracking_uri
    experiment = cfg.experiment_name

    tasks = load_task_data.map(cfg.pool.tasks).result()
    trainings = [training_for(t.name, cfg.pool.training, cfg.pool.overrides) for t in tasks]
    fps = [fingerprint_task(cfg.model, t, tr) for t, tr in zip(tasks, trainings, strict=True)]
    found = find_adapter.map(storage, tracking_uri, fps).result()

    versions = {t.name: v for t, v in zip(tasks, found, strict=True) if v is not None}
    todo = [i for i, v in enumerate(found) if v is None]
    log.info("pool: %d tasks, %d registered, %d to train", len(tasks), len(versions), len(todo))
    for wave in chunks(todo, cfg.pool.concurrency):
        trained = [train_adapter.submit(cfg.model, tasks[i], trainings[i], storage, tracking_uri, experiment,
                                        parent_run_id, cfg.pool.embed_examples) for i in wave]
        for i, fut in zip(wave, trained, strict=True):
            versions[tasks[i].name] = fut.result()
    return {"versions": versions, "trained": [tasks[i].name for i in todo],
            "skipped": [t.name for t, v in zip(tasks, found, strict=True) if v is not None],
            "tasks": [task_name(s) for s in cfg.pool.tasks]}


if __name__ == "__main__":
    print(train_pool(sys.argv[1]))
