"""Fixtures for the pipeline tests: a tiny experiment config, isolated stores, a Prefect API."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import yaml

TINY_POOL = ["add", "count_items", "sort_words", "first_item"]


def tiny_config(tmp_path, **overrides) -> dict:
    cfg = {
        "name": "tiny-experiment",
        "model": {"spec": "tiny-llama", "device": "cpu"},
        "storage": {"uri": (tmp_path / "store").as_uri()},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "pool": {
            "tasks": [{"source": "skills", "name": s, "n_train": 200, "n_validation": 16, "n_test": 8}
                      for s in TINY_POOL],
            "training": {"steps": 60, "lr": 0.01, "batch_size": 16, "max_validation": 16},
            "embed_examples": 16,
        },
        "targets": [{"task": {"source": "skills", "name": "count_then_add", "n_test": 12}, "shots": 5}],
        "selection": {"filters": ["embedding"], "k": 4},
        "methods": ["lorahub", "cat", "uniform", "centroid"],
        "compose": {"lorahub": {"budget": 12}},
        "eval": {"limit": 12, "k_shot": 2, "batch_size": 12, "baselines": ["zero-shot", "icl", "datamix"]},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def write_config(tmp_path, cfg: dict):
    path = tmp_path / "experiment.yaml"
    path.write_text("# lorasoup run --config experiment.yaml\n" + yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def prefect_api():
    """Prefect's test harness: a temporary API and database for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def start_process(args, env, log, cwd=None):
    """A server or worker in its own process group, its output to `log` (shown when a test fails)."""
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc):
    """SIGTERM to the process group, SIGKILL if it does not end within 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
