import json

from typer.testing import CliRunner

from lorasoup_core.cli import app

runner = CliRunner()
BASE = ["eval", "--model", "tiny-llama", "--device", "cpu", "--limit", "2"]


def test_eval_prints_scores_intervals_and_throughput(shared_data, random_adapters, tmp_path):
    res = runner.invoke(app, [*BASE, "--benchmark", "bbh", "--tasks", "navigate,snarks", "--mode", "icl",
                              "--k-shot", "1", "--predictions", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert "navigate" in res.output and "snarks" in res.output and "macro average" in res.output
    assert "examples/s" in res.output and "prompt tokens/example" in res.output
    assert set(json.loads((tmp_path / "p.json").read_text())) == {"navigate", "snarks"}
    res = runner.invoke(app, [*BASE, "--benchmark", "skills", "--tasks", "add", "--adapter",
                              str(random_adapters["causal"]), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # the progress bar goes to stderr
    assert out["rows"][0]["method"] == "llama-lora" and out["rows"][0]["n"] == 2
    assert out["throughput"]["examples_per_s"] > 0 and len(out["macro"]) == 3


def test_eval_bad_arguments_exit_2_with_the_reason(shared_data, random_adapters):
    for args, reason in [(["--benchmark", "nope"], "unknown benchmark 'nope'"),
                         (["--benchmark", "bbh", "--tasks", "nope"], "unknown bbh task"),
                         (["--benchmark", "skills", "--mode", "fast"], "'fast' is not one of 'zero-shot'"),
                         (["--benchmark", "skills", "--mode", "icl", "--adapter", "x"], "--adapter is used"),
                         (["--benchmark", "skills", "--adapter", "/nonexistent/lora"], "no such directory")]:
        res = runner.invoke(app, [*BASE, *args])
        assert res.exit_code == 2 and reason in res.output, (args, res.output)
