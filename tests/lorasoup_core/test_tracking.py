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
