"""What the flows read from a config takes effect there exactly as in the CLI: the S3 endpoint of
`storage`, and a misspelt `overrides` key failing before anything runs."""

from __future__ import annotations

import boto3
import pytest

from lorasoup_core.config import ConfigError
from tests.flows.conftest import tiny_config, write_config

pytestmark = pytest.mark.slow


def _small(tmp_path, **overrides) -> dict:
    cfg = tiny_config(tmp_path, **overrides)
    cfg["pool"]["tasks"] = cfg["pool"]["tasks"][:2]
    cfg["pool"]["training"]["steps"] = 8
    cfg["targets"][0]["task"]["n_test"] = 4
    cfg["methods"] = ["uniform"]
    cfg["compose"] = {}
    cfg["selection"]["k"] = 2
    cfg["eval"] = {"limit": 4, "k_shot": 2, "batch_size": 4, "baselines": ["zero-shot"]}
    return cfg


def test_run_honours_the_configured_s3_endpoint(tmp_path, prefect_api, moto_server, s3_bucket, monkeypatch):
    """Only the config names the endpoint (no environment variable does): without it s3fs would go to AWS."""
    from flows.experiment import experiment

    for var in ("LORASOUP_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    cfg = _small(tmp_path, name="s3-endpoint")
    cfg["storage"] = {"uri": f"s3://{s3_bucket}/lorasoup", "s3_endpoint_url": moto_server}
    result = experiment(config=str(write_config(tmp_path, cfg)))
    assert result.report_uri.startswith(f"s3://{s3_bucket}/lorasoup/reports/")
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_server).list_objects_v2(
        Bucket=s3_bucket)["Contents"]]
    assert any(k.startswith("lorasoup/adapters/tiny-llama/add/") for k in keys), keys
    assert any(k.startswith("lorasoup/adapters/tiny-llama/count_then_add-uniform/") for k in keys), keys
    assert {r.method for r in result.rows} == {"uniform", "zero-shot"}


def test_misspelt_override_fails_the_flows_before_anything_runs(tmp_path, prefect_api):
    from flows.experiment import experiment
    from flows.train_pool import train_pool

    cfg = _small(tmp_path, name="bad-override")
    cfg["pool"]["overrides"] = {"add": {"stepz": 3}}
    path = write_config(tmp_path, cfg)
    for flow in (train_pool, experiment):
        with pytest.raises(ConfigError, match=r"overrides\.add\.stepz: Extra inputs are not permitted"):
            flow(config=str(path))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "store").exists()


def test_seeds_repeat_every_cell_and_report_mean_and_best(tmp_path, prefect_api):
    """LoraHub's protocol as an experiment option: every (target, method) once per seed, shots drawn per
    seed; the table is the mean over seeds (n counts every scored example), then the best seed."""
    from flows.experiment import experiment

    cfg = _small(tmp_path, name="two-seeds")
    cfg["seeds"] = [0, 1]
    cfg["pool"]["tasks"] = tiny_config(tmp_path)["pool"]["tasks"][:3]  # add, count_items, sort_words
    cfg["selection"] = {"filters": ["random"], "k": 2}
    cfg["methods"] = ["uniform", "uniform-oracle"]  # a variant with its own filter at the same k
    cfg["variants"] = {"uniform-oracle": {"method": "uniform", "selection": {"filters": ["oracle"], "k": 2}}}
    cfg["eval"]["baselines"] = ["zero-shot", "icl"]
    result = experiment(config=str(write_config(tmp_path, cfg)))
    assert sorted(r.seed for r in result.targets) == [0, 1]
    per_seed = {r.seed: {row.method: row for row in r.rows} for r in result.targets}
    for row in result.rows:
        runs = [per_seed[s][row.method] for s in (0, 1)]
        assert row.n == sum(r.n for r in runs) and row.score == pytest.approx(sum(r.score for r in runs) / 2)
        assert row.ci_low <= row.score <= row.ci_high
    assert "Best seed" in result.table and "Mean over seeds [0, 1]" in result.table
    # the oracle variant composed the target's own two skills, the random draw whatever it drew
    for res in result.targets:
        oracle = res.weights["uniform-oracle"]
        assert sorted(oracle) == ["add", "count_items"]
    # cost columns: prompt tokens and seconds per example for every method, compose time for composers
    costs = {c["method"]: c for c in result.analysis["costs"]}
    assert set(costs) == {"uniform", "uniform-oracle", "zero-shot", "icl"}
    assert costs["icl"]["prompt_tokens_per_example"] > 2 * costs["zero-shot"]["prompt_tokens_per_example"]
    assert costs["uniform"]["prompt_tokens_per_example"] == costs["zero-shot"]["prompt_tokens_per_example"]
    assert costs["uniform"]["compose_seconds"] > 0 and costs["zero-shot"]["compose_seconds"] is None
    assert all(c["eval_seconds_per_example"] > 0 for c in costs.values())
    # paired comparisons against zero-shot (the default) on the same examples
    comps = {c["method"]: c for c in result.analysis["comparisons"]}
    assert set(comps) == {"uniform", "uniform-oracle", "icl"} and all(0 <= c["p_value"] <= 1 for c in comps.values())
    assert "Cost per test example" in result.table and "Paired comparisons" in result.table
