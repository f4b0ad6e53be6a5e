import json

from typer.testing import CliRunner

from lorasoup_core.cli import app
from lorasoup_core.data import load_task

runner = CliRunner()


def test_data_list_sources_and_tasks(shared_data):
    result = runner.invoke(app, ["data", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["source"] for r in json.loads(result.output)} >= {"bbh", "skills", "gsm8k", "hf", "jsonl"}
    result = runner.invoke(app, ["data", "list", "bbh", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.output)) == 27
    result = runner.invoke(app, ["data", "list", "skills"])
    assert "count_then_add" in result.output.split() and "add" in result.output.split()


def test_data_show_prints_sizes_fingerprint_and_examples():
    result = runner.invoke(app, ["data", "show", "skills:sort_then_first", "--n", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    task = load_task({"source": "skills", "name": "sort_then_first", "seed": 3})
    assert f"fingerprint: {task.fingerprint}" in result.output
    assert "splits: train=200, validation=50, test=100" in result.output
    assert result.output.count("--- train") == 2 and f"{task.prompt(task.train[1])} {task.train[1].target}" in result.output


def test_data_show_path_option(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(f'{{"input": "q{i}", "target": "{i}"}}\n' for i in range(10)))
    result = runner.invoke(app, ["data", "show", "jsonl:mine", "--path", str(f), "--n", "0"])
    assert result.exit_code == 0, result.output
    assert "splits: train=5, validation=1, test=4" in result.output


def test_data_errors_exit_2_with_the_reason(tmp_path):
    result = runner.invoke(app, ["data", "show", "nope:x"])
    assert result.exit_code == 2 and "unknown data source 'nope'" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a"}\n')
    result = runner.invoke(app, ["data", "show", "jsonl:bad", "--path", str(bad)])
    assert result.exit_code == 2 and "missing field" in result.output and "bad.jsonl" in result.output
    result = runner.invoke(app, ["data", "list", "nope"])
    assert result.exit_code == 2 and "known: bbh" in result.output
    for args in (["data", "--help"], ["data", "list", "--help"], ["data", "show", "--help"]):
        assert runner.invoke(app, args).exit_code == 0
