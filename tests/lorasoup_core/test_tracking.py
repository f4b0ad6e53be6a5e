"""MLflow artifacts of a local tracking database go beside that database, not to ./mlruns of the cwd."""

from __future__ import annotations

from lorasoup_core import tracking
from lorasoup_core.reporting import ResultRow


def test_artifacts_go_beside_the_database_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for folder, stem in (("a", "one"), ("b", "two")):  # two databases: two artifact roots
        (tmp_path / folder).mkdir()
        uri = f"sqlite:///{tmp_path / folder / stem}.db"
        run_id = tracking.start_run("exp", "run", tracking_uri=uri)
        tracking.log_results(run_id, [ResultRow("t", "m", 0.5, 0.4, 0.6, 10)], tracking_uri=uri)
        artifact_uri = tracking.client(uri).get_run(run_id).info.artifact_uri
        assert artifact_uri.startswith((tmp_path / folder / f"{stem}-artifacts").as_uri())
        assert (tmp_path / folder / f"{stem}-artifacts").is_dir()
    assert list((tmp_path / "cwd").iterdir()) == []  # no mlruns/ where the command ran
    assert tracking.default_artifact_location("http://127.0.0.1:5000") is None  # a server decides for itself


def test_a_remote_store_holds_the_experiments_mlflow_artifacts():
    """With an S3 store, MLflow's artifacts go under the store's prefix, whatever the tracking server's
    default (checked end to end against `mlflow server` and moto in tests/flows/test_servers.py)."""
    for tracking_uri in ("http://127.0.0.1:5000", "sqlite:////tmp/x.db"):
        assert tracking.default_artifact_location(tracking_uri, "s3://bucket/team/", "my exp") == \
            "s3://bucket/team/mlflow/my-exp"
    assert tracking.default_artifact_location("http://127.0.0.1:5000", "file:///home/x/artifacts", "e") is None


def test_system_metrics_are_sampled_while_a_run_is_open(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with tracking.run("exp", "busy", tracking_uri=uri, system_metrics=True) as run_id:
        time.sleep(1.5)
    metrics = tracking.client(uri).get_run(run_id).data.metrics
    assert metrics["system/cpu_utilization_percentage"] >= 0 and metrics["system/system_memory_usage_megabytes"] > 0
    assert not tracking._MONITORS  # stopped with the run
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # MLflow's own switch turns it off
    with tracking.run("exp", "quiet", tracking_uri=uri, system_metrics=True) as quiet:
        time.sleep(0.5)
    assert not any(k.startswith("system/") for k in tracking.client(uri).get_run(quiet).data.metrics)
