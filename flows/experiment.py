"""experiment: the end-to-end DAG from one YAML config.

    lorasoup run --config configs/demo.yaml        (or: python -m flows.experiment configs/demo.yaml)

pool -> for each target and seed: run each method (composers and baselines) and evaluate -> results table
and plots in MLflow, a Prefect table artifact, and the report in the artifact store.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.deployments import run_deployment

from flows._common import resolve_config, resolve_pool_file, task_runner
from flows.compose_and_evaluate import compose_and_evaluate
from flows.train_pool import train_pool
from lorasoup_core.experiment import ExperimentResult
from lorasoup_core.registry import use_storage
from lorasoup_core.settings import get_settings
from tasks.report import finish_experiment_run, publish_report, start_experiment_run, tag_data_fingerprints


def _subflow(remote: bool, deployment: str, local_flow: Any, **parameters: Any) -> Any:
    """Run a subflow here, or as a deployment on the GPU work pool (results come back through Prefect's
    result storage, which must then be shared, e.g. an S3 result storage block)."""
    if not remote:
        return local_flow(**parameters)
    return _remote_runs(deployment, [parameters])[0]


# `remote` picks the deployments of deployments/prefect.yaml that run the steps on the GPU pool
REMOTE_VARIANTS = {"process": "", "docker": "-docker", "kubernetes": "-kubernetes"}


def remote_deployments(variant: str) -> tuple[str, str]:
    """The train-pool and compose-and-evaluate deployments of a remote variant (process, docker, kubernetes)."""
    if variant not in REMOTE_VARIANTS:
        raise ValueError(f"unknown remote variant {variant!r}; known: {', '.join(REMOTE_VARIANTS)}")
    suffix = REMOTE_VARIANTS[variant]
    return f"train-pool/train-pool{suffix}", f"compose-and-evaluate/compose-and-evaluate{suffix}"


_LABEL_KEYS = ("target_index", "seed")  # what tells the runs of one deployment apart in an error


def _remote_runs(deployment: str, runs: list[dict[str, Any]], poll_s: float = 2.0) -> list[Any]:
    """Run a deployment once per parameter set, all at once (the GPU pool's workers take them in parallel),
    and return their results in the order given. Waits for every run, then fails naming each that did not
    complete, so none is left unwatched."""
    from prefect.client.orchestration import get_client

    submitted = [run_deployment(deployment, parameters=p, as_subflow=True, timeout=0) for p in runs]
    final: dict[Any, Any] = {}
    with get_client(sync_client=True) as client:  # run_deployment's own wait (polling), for all runs at once
        while pending := [run.id for run in submitted if run.id not in final]:
            for run_id in pending:
                run = client.read_flow_run(run_id)
                if run.state and run.state.is_final():
                    final[run_id] = run
            if len(final) < len(submitted):
                time.sleep(poll_s)
    done = [final[run.id] for run in submitted]
    failed = [f"{r.name} ({', '.join(f'{k}={p[k]}' for k in _LABEL_KEYS if k in p)}) {r.state.name}: "
              f"{(r.state.message or '')[:300]}" for r, p in zip(done, runs, strict=True) if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"deployment {deployment}: {len(failed)} of {len(runs)} runs did not complete: "
                           + "; ".join(failed))
    return [r.state.result() for r in done]


@flow(name="experiment", log_prints=True)
def experiment(config: str | dict[str, Any], remote: bool = False, variant: str = "process") -> ExperimentResult:
    """Run one experiment config end to end; returns the table, the MLflow run and the report URI. With
    `remote`, training and composition run as the GPU deployments of `variant` (process, docker, kubernetes)."""
    train_deployment, compose_deployment = remote_deployments(variant)
    cfg = resolve_config(config)
    use_storage(cfg.storage)
    config_path = config if isinstance(config, str) else None
    as_dict = cfg.model_dump(mode="json")
    run_id = start_experiment_run(cfg, config_path)
    try:
        runner = task_runner(cfg.pool.dask_address, cfg.pool.concurrency)
        pool = _subflow(remote, train_deployment, train_pool.with_options(task_runner=runner),
                        config=resolve_pool_file(cfg).model_dump(mode="json"), parent_run_id=run_id)
        tag_data_fingerprints(cfg, run_id, pool)
        cells = [dict(config=as_dict, target_index=i, parent_run_id=run_id, seed=seed)
                 for i in range(len(cfg.targets)) for seed in cfg.run_seeds]
        if remote:  # every target at once on the GPU pool; results in target order
            results = _remote_runs(compose_deployment, cells)
        else:
            results = [compose_and_evaluate(**cell) for cell in cells]
        published = publish_report(cfg, run_id, results, pool)
    except BaseException:
        finish_experiment_run(cfg, run_id, failed=True)
        raise
    finish_experiment_run(cfg, run_id)
    print(published.text)
    return ExperimentResult(cfg.experiment_name, run_id, cfg.tracking.tracking_uri or get_settings().tracking_uri,
                            published.artifact.uri, published.text, published.analysis.rows, pool.trained,
                            pool.skipped, results, published.analysis.to_dict())


if __name__ == "__main__":
    print(experiment(str(Path(sys.argv[1]))).summary())
