"""The experiment flow end to end on tiny-llama under Prefect's test harness."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import open_store
from tests.flows.conftest import TINY_POOL, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_experiment_end_to_end_and_rerun(tmp_path, prefect_api):
    from flows.experiment import experiment

    cfg = tiny_config(tmp_path)
    path = write_config(tmp_path, cfg)
    result = experiment(config=str(path))

    methods = {r.method for r in result.rows}
    assert methods == {"lorahub", "cat", "uniform", "centroid", "zero-shot", "icl", "datamix"}
    assert all(r.task == "count_then_add" and r.n == 12 and r.ci_low <= r.score <= r.ci_high for r in result.rows)
    assert "| count_then_add |" in result.table and sorted(result.trained) == sorted(TINY_POOL)

    # MLflow: a parent run with the resolved config, nested runs for training / composition, the table, plots
    client = MlflowClient(cfg["tracking"]["tracking_uri"])
    parent = client.get_run(result.run_id)
    assert parent.data.params["pool.training.steps"] == "60" and parent.info.status == "FINISHED"
    assert parent.data.tags["lorasoup.pool_tasks"] == ",".join(TINY_POOL)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    steps = sorted(c.data.tags["lorasoup.step"] for c in children)
    assert steps.count("train") == len(TINY_POOL) + 1 and steps.count("compose") == 4  # + DATA-MIX
    for train_run in (c for c in children if c.data.tags["lorasoup.step"] == "train"):
        # one metric scheme for training runs, whichever path trained them (see tests/lorasoup_core/pool)
        curve = client.get_metric_history(train_run.info.run_id, "train_loss")
        assert [m.step for m in curve] == list(range(1, 61)) and "train_loss_curve" not in train_run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "results")}
    assert {"results/results.json", "results/scores.png", "results/weights.png", "results/results.md"} <= artifacts
    assert "score/count_then_add/lorahub" in parent.data.metrics
    # one nested run per evaluation: score, interval and n as metrics, task/method/seed tags, the test split
    evals = {c.data.tags["lorasoup.method"]: c for c in children if c.data.tags["lorasoup.step"] == "evaluate"}
    assert set(evals) == methods
    for method, ev in evals.items():
        row = next(r for r in result.rows if r.method == method)
        assert ev.data.metrics["score"] == pytest.approx(row.score) and ev.data.metrics["n"] == row.n
        assert ev.data.metrics["ci_low"] <= row.score <= ev.data.metrics["ci_high"]
        assert (ev.data.tags["lorasoup.task"], ev.data.tags["lorasoup.seed"]) == ("count_then_add", "0")
        assert ev.info.run_name == f"eval count_then_add · {method} · seed 0" and ev.data.tags["prefect.flow_run_id"]
        assert [d.dataset.name for d in ev.inputs.dataset_inputs] == ["count_then_add"]
    composed_by = {m: ev.data.tags.get("lorasoup.adapter_run") for m, ev in evals.items()}
    assert all(composed_by[m] for m in ("lorahub", "cat", "uniform", "centroid"))

    # registry: pool + DATA-MIX + one composed adapter per method, with lineage; report in the store
    reg = AdapterRegistry(cfg["tracking"]["tracking_uri"], open_store(cfg["storage"]["uri"]))
    versions = reg.list()
    assert sorted(v.origin for v in versions) == ["composed"] * 4 + ["trained"] * (len(TINY_POOL) + 1)
    lorahub = next(v for v in versions if v.origin == "composed" and "lorahub" in v.name)
    lineage = json.loads(lorahub.tags["lineage"])
    assert lineage["method"] == "lorahub" and lorahub.tags["lineage.method"] == "lorahub"
    # readable lineage and the evaluated score on the version, searchable tags on the registered model
    assert lorahub.tags["lineage.candidates"].split(", ") == [v for v in lineage["versions"]]
    assert lorahub.tags["score.count_then_add"].startswith(f"{100 * evals['lorahub'].data.metrics['score']:.1f} [")
    assert lorahub.tags["score_run.count_then_add"] == evals["lorahub"].info.run_id
    model = client.get_registered_model(lorahub.name)
    assert model.tags == {"task": "count_then_add", "base_model": "tiny-llama", "origin": "composed",
                          "adapter": "count_then_add-lorahub", "method": "lorahub"}
    assert "lorahub compositions for count_then_add" in model.description
    assert [m.name for m in client.search_registered_models("tags.method = 'uniform'")] == [
        "lorasoup.tiny-llama.count_then_add-uniform"]
    # the parent run is named by config, start time and outcome; its description is the report
    assert parent.info.run_name.startswith("tiny-experiment 20")
    assert f" · trained {len(TINY_POOL)} of {len(TINY_POOL)} · best " in parent.info.run_name
    assert parent.data.tags["mlflow.note.content"] == result.table
    store = open_store(cfg["storage"]["uri"])
    assert store.exists(f"reports/tiny-experiment/{result.run_id}")

    # `lorasoup compose --config` reproduces the run's composition for one target: the same weights
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    report = json.loads(store.read_bytes(f"reports/tiny-experiment/{result.run_id}", "results.json"))
    out = CliRunner().invoke(app, ["compose", "--config", str(path), "--target", "count_then_add", "--method", "lorahub"])
    assert out.exit_code == 0, out.output
    printed = dict(p.split("=") for p in out.output.split("weights: ")[1].splitlines()[0].split(", "))
    expected = report["weights"]["count_then_add/lorahub"]
    assert {n: float(w) for n, w in printed.items()} == pytest.approx(expected, abs=1e-3)
    versions = reg.list()

    # a second run trains nothing, creates no versions, and reuses cached compositions and scores, also
    # without CAT (the one method that trains on the candidates' data: the others' cache keys never held it)
    path = write_config(tmp_path, {**cfg, "methods": ["lorahub", "uniform", "centroid"]})
    again = experiment(config=str(path))
    assert again.trained == [] and sorted(again.skipped) == sorted(TINY_POOL)
    assert len(reg.list()) == len(versions)
    assert {(r.method, r.score) for r in again.rows} == {(r.method, r.score) for r in result.rows if r.method != "cat"}
    # the warm run's evaluation runs link to the compositions it reused (the first run's compose runs)
    warm = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{again.run_id}' "
                              "and tags.`lorasoup.step` = 'evaluate'")
    assert {r.data.tags["lorasoup.method"]: r.data.tags.get("lorasoup.adapter_run") for r in warm} == {
        m: run for m, run in composed_by.items() if m != "cat"}
    assert "pool reused" in client.get_run(again.run_id).info.run_name  # a warm run does not look like a cold one
