"""Pool training on a Dask cluster (the `dask` extra): a real scheduler and a worker process on
127.0.0.1, started and stopped here. Each adapter is trained and registered on the worker that
trained it, so a worker's local files never have to reach the flow's process."""

from __future__ import annotations

import os

import pytest
from mlflow.tracking import MlflowClient

from lorasoup_core.storage import fetch
from tests.flows.conftest import TINY_POOL, tiny_config

pytestmark = pytest.mark.slow


def test_pool_trains_on_a_dask_cluster(tmp_path, prefect_api):
    from distributed import Client, LocalCluster, get_task_stream

    from flows._common import task_runner
    from flows.train_pool import train_pool

    cfg = tiny_config(tmp_path, name="dask-pool")
    cfg["pool"]["tasks"] = cfg["pool"]["tasks"][:2]
    cfg["pool"]["concurrency"] = 2
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        cfg["pool"]["dask_address"] = cluster.scheduler_address
        runner = task_runner(cluster.scheduler_address, 2)
        with get_task_stream(client) as stream:
            out = train_pool.with_options(task_runner=runner)(config=cfg)
        worker_pids = set(client.run(os.getpid).values())

    assert sorted(out.trained) == sorted(TINY_POOL[:2]) and not out.skipped
    ran = [t["key"] for t in stream.data]
    assert sum("ensure_adapter" in str(k) for k in ran) >= 2, ran  # the training ran on the cluster
    assert worker_pids and os.getpid() not in worker_pids
    client = MlflowClient(cfg["tracking"]["tracking_uri"])
    for name in TINY_POOL[:2]:
        version = out.versions[name]
        mv = client.get_model_version(version.name, version.version)
        assert name in mv.tags["task"] and mv.source == version.store_uri
        assert (fetch(version.store_uri, tmp_path / "fetched" / name) / "adapter_model.safetensors").is_file()
