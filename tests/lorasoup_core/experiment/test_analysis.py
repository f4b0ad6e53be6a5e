"""An experiment's analysis from typed results: intervals over seeds, the macro row, the cost columns and
the paired comparisons (statistics checked against scipy in tests/lorasoup_core/bench/test_stats.py)."""

import pytest

from lorasoup_core.bench.stats import macro_interval, paired_comparison
from lorasoup_core.experiment import TargetResult
from lorasoup_core.experiment.analysis import analyse
from lorasoup_core.reporting import ResultRow

SCORES = {  # (task, seed) -> method -> per-example scores
    ("t1", 0): {"lorahub": [1, 1, 0, 0], "zero-shot": [0, 0, 0, 0], "icl": [1, 1, 1, 0]},
    ("t1", 1): {"lorahub": [1, 0, 0, 0], "zero-shot": [0, 0, 0, 0], "icl": [1, 1, 1, 1]},
    ("t2", 0): {"lorahub": [1, 1, 1, 1], "zero-shot": [1, 0, 0, 0], "icl": [1, 1, 0, 0]},
    ("t2", 1): {"lorahub": [1, 1, 1, 0], "zero-shot": [1, 0, 0, 0], "icl": [1, 1, 1, 0]},
}
THROUGHPUT = {"lorahub": {"prompt_tokens_per_example": 10.0, "compose_seconds": 3.0},
              "zero-shot": {"prompt_tokens_per_example": 10.0}, "icl": {"prompt_tokens_per_example": 60.0}}


def _results():
    out = []
    for (task, seed), by_method in SCORES.items():
        rows = [ResultRow(task, m, sum(s) / len(s), 0.0, 1.0, len(s)) for m, s in by_method.items()]
        tp = {m: {**THROUGHPUT[m], "examples": 4.0, "seconds": 0.4 if m != "icl" else 2.0} for m in by_method}
        out.append(TargetResult(task, "fp", rows, seed=seed, scores={m: [float(x) for x in s]
                                                                      for m, s in by_method.items()}, throughput=tp))
    return out


def test_analysis_rows_macro_costs_and_comparisons():
    a = analyse(_results(), compare_to=["zero-shot"])
    assert a.seeds == [0, 1]
    cell = {(r.task, r.method): r for r in a.rows}
    assert cell["t1", "lorahub"].score == pytest.approx(3 / 8) and cell["t1", "lorahub"].n == 8
    assert cell["t1", "zero-shot"].ci_high > 0  # all zero: Wilson, not a [0, 0] interval
    per_method = {m: {t: [SCORES[t, s][m] for s in (0, 1)] for t in ("t1", "t2")} for m in THROUGHPUT}
    macro = {r.method: r for r in a.macro}
    assert (macro["icl"].score, macro["icl"].ci_low, macro["icl"].ci_high) == pytest.approx(
        macro_interval(per_method["icl"]))
    costs = {c.method: c for c in a.costs}
    assert costs["icl"].prompt_tokens_per_example == 60.0 and costs["icl"].eval_seconds_per_example == 0.5
    assert costs["lorahub"].compose_seconds == 3.0 and costs["zero-shot"].compose_seconds is None
    comps = {c.method: c for c in a.comparisons}
    assert set(comps) == {"lorahub", "icl"} and all(c.reference == "zero-shot" for c in a.comparisons)
    assert comps["lorahub"] == paired_comparison(per_method["lorahub"], per_method["zero-shot"], "lorahub", "zero-shot")
    text = a.markdown()
    assert "Mean over seeds [0, 1]" in text and "| **macro** |" in text and "Best seed" in text
    assert "| icl | 60.0 | 0.500 | – |" in text and "| lorahub | zero-shot | +" in text


def test_a_published_results_json_analyses_again(tmp_path):
    """`lorasoup report` re-reads what publish_report writes (scores per 'target@seed') and gives the same
    analysis, now against any method of the run."""
    import json

    from typer.testing import CliRunner

    from lorasoup_core.cli import app
    from lorasoup_core.experiment.analysis import results_from_report

    results = _results()
    doc = {"seeds": [0, 1], "rows_per_seed": [{**r.to_dict(), "seed": res.seed} for res in results for r in res.rows],
           "scores": {f"{res.target}@{res.seed}": res.scores for res in results},
           "throughput": {f"{res.target}@{res.seed}": res.throughput for res in results}}
    again = analyse(results_from_report(doc), ["icl"])
    assert again.to_dict() == analyse(results, ["icl"]).to_dict()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    out = CliRunner().invoke(app, ["report", str(path), "--compare-to", "icl", "--json"])
    assert out.exit_code == 0, out.output
    assert {c["reference"] for c in json.loads(out.output)["comparisons"]} == {"icl"}
    bad = CliRunner().invoke(app, ["report", str(path), "--compare-to", "nope"])
    assert bad.exit_code == 2 and "not in this run: nope" in bad.output
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in doc.items() if k != "scores"}))
    assert "no per-example scores" in CliRunner().invoke(app, ["report", str(old)]).output


def test_companion_metrics_are_compared_only_with_the_same_metric():
    results = _results()
    for res in results:  # multiple-choice companions beside exact match
        for m in ("lorahub", "zero-shot"):
            res.rows.append(ResultRow(res.target, f"{m}/mc", 0.5, 0.0, 1.0, 4))
            res.scores[f"{m}/mc"] = [1.0, 0.0, 1.0, 0.0]
    pairs = {(c.method, c.reference) for c in analyse(results, compare_to=["zero-shot", "zero-shot/mc"]).comparisons}
    assert pairs == {("lorahub", "zero-shot"), ("icl", "zero-shot"), ("lorahub/mc", "zero-shot/mc")}
