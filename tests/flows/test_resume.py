"""A pool-training flow run killed with SIGKILL and run again finishes without redoing finished work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import open_store
from tests.flows.conftest import TINY_POOL, tiny_config, write_config

pytestmark = pytest.mark.slow


def _registry(cfg):
    return AdapterRegistry(cfg["tracking"]["tracking_uri"], open_store(cfg["storage"]["uri"]))


def test_sigkill_mid_pool_then_resume(tmp_path, prefect_api):
    from flows.train_pool import train_pool

    cfg = tiny_config(tmp_path)
    cfg["pool"]["training"]["steps"] = 150  # long enough to be killed in the middle
    path = write_config(tmp_path, cfg)
    # the child starts its own ephemeral Prefect API: give it time on a loaded machine (default 20 s)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-child"), "PREFECT_API_URL": "",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL")
    log_path = tmp_path / "child.log"
    log = open(log_path, "wb")  # the child's output, shown when an assertion fails
    proc = subprocess.Popen([sys.executable, "-m", "flows.train_pool", str(path)], env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    reg = _registry(cfg)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                if reg.list():
                    break
            except Exception:  # the child may still be creating the database
                pass
            time.sleep(0.3)
        assert proc.poll() is None, "the pool finished before it could be killed:\n" + \
            log_path.read_text(errors="replace")[-4000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    done_before = {v.task for v in reg.list()}
    assert 1 <= len(done_before) < len(TINY_POOL), log_path.read_text(errors="replace")[-4000:]

    result = train_pool(config=str(path))
    assert set(result.skipped) == done_before and set(result.trained) == set(TINY_POOL) - done_before
    versions = reg.list()
    assert sorted(v.task for v in versions) == sorted(TINY_POOL)  # one version per task: no duplicates
    referenced = {v.store_uri for v in versions}
    store = open_store(cfg["storage"]["uri"])
    committed = {store.uri_for(k) for k in store.list("adapters/")}
    assert committed == referenced  # no orphan artifacts marked live
    assert train_pool(config=str(path)).trained == []
