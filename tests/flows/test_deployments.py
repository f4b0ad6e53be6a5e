"""The deployment definitions load, and their flows, parameters and configs validate."""

from __future__ import annotations

import pytest

from flows import deploy


def test_definitions_validate():
    specs = deploy.validate()
    names = {s.name for s in specs}
    assert {"experiment-demo", "train-pool", "compose-and-evaluate", "retrain-pool-nightly"} <= names
    pools = {s.name: s.work_pool for s in specs}
    assert pools["train-pool"] == "lorasoup-gpu" and pools["experiment-demo"] == "lorasoup-cpu"
    nightly = next(s for s in specs if s.name == "retrain-pool-nightly")
    assert nightly.cron == [("0 3 * * *", "UTC")]


def test_bad_definitions_are_named(tmp_path):
    bad = tmp_path / "prefect.yaml"
    bad.write_text("deployments:\n  - name: broken\n    entrypoint: flows/experiment.py:experiment\n")
    with pytest.raises(ValueError, match=r"deployments\[0\] \(broken\): missing or malformed field 'work_pool'"):
        deploy.read_specs(bad)
    bad.write_text("deployments:\n  - name: p\n    entrypoint: flows/experiment.py:experiment\n"
                   "    parameters: {config: configs/demo.yaml, nope: 1}\n    work_pool: {name: x}\n")
    with pytest.raises(Exception, match="nope"):
        deploy.validate(bad)
