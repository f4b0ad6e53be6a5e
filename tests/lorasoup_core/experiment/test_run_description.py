from mlflow import MlflowClient

from lorasoup_core import tracking
from lorasoup_core.experiment.report import run_description


def _report(rows: int) -> str:
    head = "Mean over seeds [0, 1, 2]\n\n| task | lorahub | icl |\n|---|---|---|"
    body = "\n".join(f"| task_{i:03d} | 12.3 [4.5, 67.8] | 23.4 [5.6, 78.9] |" for i in range(rows))
    return f"{head}\n{body}\n| **macro** | **1.0** | **2.0** |\n\nCost per test example\n\n| method | s |"


def test_a_long_report_is_shortened_at_whole_rows_and_kept_exactly_by_mlflow(tmp_path):
    text = _report(400)  # a study's report: about 20 000 characters
    described = run_description(text)
    kept, _, pointer = described.rpartition("\n\n")
    assert len(text) > 8000 and "results/report.md" in pointer
    assert text.startswith(kept + "\n") and kept.split("\n")[-1].startswith("| task_")  # whole rows only
    run_id = tracking.start_run("descriptions", "long", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    tracking.set_tags(run_id, {"mlflow.note.content": described}, f"sqlite:///{tmp_path / 'm.db'}")
    # MLflow stores it as given (its own cut would land mid-row, with a warning)
    assert MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").get_run(run_id).data.tags["mlflow.note.content"] == described


def test_a_report_that_fits_is_the_description_unchanged():
    text = _report(20)
    assert run_description(text) == text
