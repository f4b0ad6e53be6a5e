"""experiment: the end-to-end DAG from one YAML config.

    lorasoup run --config configs/demo.yaml        (or: python -m flows.experiment configs/demo.yaml)

pool -> (DATA-MIX baseline) -> for each target: compose with each method and evaluate -> results table
and plots in MLflow, a Prefect table artifact, and the report in the artifact store.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.deployments import run_deployment

from flows._common import resolve_config, task_runner
from flows.compose_and_evaluate import compose_and_evaluate
from flows.train_pool import train_pool
from lorasoup_core.experiment import ExperimentConfig
from lorasoup_core.settings import get_settings
from tasks.pool import find_adapter, fingerprint_task, load_task_data, register_adapter, train_datamix
from tasks.report import finish_experiment_run, publish_report, start_experiment_run, tag_data_fingerprints


def _subflow(remote: bool, deployment: str, local_flow: Any, **parameters: Any) -> dict[str, Any]:
    """Run a subflow here, or as a deployment on the GPU work pool (results come back through Prefect's
    result storage, which must then be shared, e.g. an S3 result storage block)."""
    if not remote:
        return local_flow(**parameters)
    run = run_deployment(deployment, parameters=parameters, as_subflow=True)
    if not run.state or not run.state.is_completed():
        raise RuntimeError(f"deployment {deployment} ended {run.state.name if run.state else 'without a state'}")
    return run.state.result()


def _datamix(cfg: ExperimentConfig, run_id: str) -> dict[str, Any]:
    tasks = load_task_data.map(cfg.pool.tasks).result()
    storage, tracking_uri = cfg.storage.uri, cfg.tracking.tracking_uri
    local_dir, train_run, mixed = train_datamix(cfg.model, tasks, cfg.pool.training, cfg.pool.datamix_proportions,
                                                cfg.seed, cfg.experiment_name, run_id, tracking_uri)
    fps = fingerprint_task(cfg.model, mixed, cfg.pool.training)
    version = find_adapter(storage, tracking_uri, fps) or register_adapter(storage, tracking_uri, local_dir, train_run)
    return {"uri": version["store_uri"]}  # the store URI: a remote compose-and-evaluate fetches it


@flow(name="experiment", log_prints=True)
def experiment(config: str | dict[str, Any], remote: bool = False) -> dict[str, Any]:
    """Run one experiment config end to end; returns the table, the MLflow run and the report URI."""
    cfg = resolve_config(config)
    config_path = config if isinstance(config, str) else None
    as_dict = cfg.model_dump(mode="json")
    run_id = start_experiment_run(cfg, config_path)
    try:
        runner = task_runner(cfg.pool.dask_address, cfg.pool.concurrency)
        pool = _subflow(remote, "train-pool/train-pool", train_pool.with_options(task_runner=runner),
                        config=as_dict, parent_run_id=run_id)
        tag_data_fingerprints(cfg, run_id, {t: v["data_fingerprint"] for t, v in pool["versions"].items()})
        datamix = _datamix(cfg, run_id) if "datamix" in cfg.eval.baselines else None
        results = [
            _subflow(remote, "compose-and-evaluate/compose-and-evaluate", compose_and_evaluate, config=as_dict,
                     target_index=i, parent_run_id=run_id, datamix=datamix)
            for i in range(len(cfg.targets))
        ]
        rows = [r for res in results for r in res["rows"]]
        weights = {k: v for res in results for k, v in res["weights"].items()}
        traces = {k: v for res in results for k, v in res["traces"].items()}
        extra = {"pool": {"trained": pool["trained"], "skipped": pool["skipped"]},
                 "throughput": {res["target"]: res["throughput"] for res in results},
                 "selection": {res["target"]: res["selection"] for res in results}}
        out = publish_report(cfg, run_id, rows, weights, traces, extra)
    except BaseException:
        finish_experiment_run(cfg, run_id, failed=True)
        raise
    finish_experiment_run(cfg, run_id)
    print(out["table"])
    return {"table": out["table"], "report_uri": out["report_uri"], "run_id": run_id, "rows": rows,
            "experiment": cfg.experiment_name, "trained": pool["trained"], "skipped": pool["skipped"],
            "tracking_uri": cfg.tracking.tracking_uri or get_settings().tracking_uri}


if __name__ == "__main__":
    print(experiment(str(Path(sys.argv[1]))))
