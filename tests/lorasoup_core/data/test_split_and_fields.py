"""Carving validation from train, train/validation/test overlap, and non-text fields: each refused
with one error naming the file (and row)."""

import json

import pytest

from lorasoup_core.data import DataError, load_task


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _spec(root, **extra):
    return {"source": "jsonl", "name": "d", "path": str(root), **extra}


def test_validation_carved_from_train_leaves_most_for_training(tmp_path):
    """40 train rows and a test file used to train on 1 example (validation = min(50, 40 - 1))."""
    _write_jsonl(tmp_path / "train.jsonl", [{"input": f"t{i}", "target": str(i)} for i in range(40)])
    _write_jsonl(tmp_path / "test.jsonl", [{"input": f"s{i}", "target": "x"} for i in range(12)])
    task = load_task(_spec(tmp_path))
    assert (len(task.train), len(task.validation), len(task.test)) == (36, 4, 12)
    assert not {e.input for e in task.train} & {e.input for e in task.validation}
    # 10% capped at 50; at least one for validation, at least one left to train on
    from lorasoup_core.data.sources.reading import carved_validation

    assert [carved_validation(n, None, 50) for n in (0, 1, 2, 5, 40, 499, 5000)] == [0, 0, 1, 1, 4, 49, 50]
    assert carved_validation(10, 30, 50) == 9  # an explicit count still leaves one train row
    big = load_task(_spec(tmp_path, n_validation=30))
    assert (len(big.train), len(big.validation)) == (10, 30)


def test_train_test_overlap_is_refused_with_the_count(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"input": f"t{i}", "target": str(i)} for i in range(40)])
    _write_jsonl(tmp_path / "test.jsonl", [{"input": x, "target": "x"} for x in ("s0", "t3", "s1", "t7", "t9")])
    with pytest.raises(DataError) as err:
        load_task(_spec(tmp_path, n_validation=0))
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'test.jsonl'}: task 'd': 3 of 5 test inputs also appear in the train split "
                          f"({tmp_path / 'train.jsonl'}); first: test row 1 ('t3')"), msg


def test_validation_test_overlap_is_refused(tmp_path):
    """Carving validation used to hide overlap: rows carved from train into validation were never checked."""
    _write_jsonl(tmp_path / "train.jsonl", [{"input": f"t{i}", "target": str(i)} for i in range(40)])
    _write_jsonl(tmp_path / "test.jsonl", [{"input": f"t{i}", "target": "x"} for i in range(40)])
    with pytest.raises(DataError, match=r"test\.jsonl: task 'd': \d+ of 40 test inputs also appear in the "):
        load_task(_spec(tmp_path))
    # an official validation file that shares inputs with test
    _write_jsonl(tmp_path / "train.jsonl", [{"input": f"t{i}", "target": str(i)} for i in range(40)])
    _write_jsonl(tmp_path / "test.jsonl", [{"input": f"s{i}", "target": "x"} for i in range(10)])
    _write_jsonl(tmp_path / "validation.jsonl", [{"input": x, "target": "x"} for x in ("v0", "s4", "s5")])
    with pytest.raises(DataError) as err:
        load_task(_spec(tmp_path))
    assert str(err.value).startswith(f"{tmp_path / 'test.jsonl'}: task 'd': 2 of 10 test inputs also appear in the "
                                     f"validation split ({tmp_path / 'validation.jsonl'}); first: test row 4 ('s4')")


@pytest.mark.parametrize(("value", "message"), [
    (True, "row 1 (line 2): field 'target' is a boolean (true); expected a string or a number"),
    ([1, 2], "row 1 (line 2): field 'target' is a list ([1, 2]); expected a string or a number"),
    ({"a": 1}, "row 1 (line 2): field 'target' is an object ({\"a\": 1}); expected a string or a number"),
    (None, "row 1 (line 2): field 'target' is null"),
])
def test_non_text_targets_are_refused_naming_file_and_row(tmp_path, value, message):
    f = _write_jsonl(tmp_path / "rows.jsonl", [{"input": "a", "target": "b"}, {"input": "c", "target": value}])
    with pytest.raises(DataError) as err:
        load_task({"source": "jsonl", "name": "rows", "path": str(f)})
    assert str(err.value) == f"{f}: {message}" or str(err.value).startswith(f"{f}: {message}"), str(err.value)
    assert "missing field" not in str(err.value)


def test_number_targets_are_written_plainly_and_inputs_are_checked_too(tmp_path):
    rows = [{"input": f"q{i}", "target": t} for i, t in enumerate([3, 2.5, -7, "x", 10, 0, 1, 2, 3, 4])]
    f = _write_jsonl(tmp_path / "nums.jsonl", rows)
    task = load_task({"source": "jsonl", "name": "nums", "path": str(f)})
    assert {e.target for e in task.train + task.validation + task.test} == {"3", "2.5", "-7", "x", "10", "0", "1",
                                                                            "2", "4"}
    g = _write_jsonl(tmp_path / "inp.jsonl", [{"input": False, "target": "b"}])
    with pytest.raises(DataError, match=r"inp\.jsonl: row 0 \(line 1\): field 'input' is a boolean \(false\)"):
        load_task({"source": "jsonl", "name": "inp", "path": str(g)})
    h = tmp_path / "nan.jsonl"
    h.write_text('{"input": "a", "target": NaN}\n')
    with pytest.raises(DataError, match=r"nan\.jsonl: row 0 \(line 1\): field 'target' is nan; expected a finite"):
        load_task({"source": "jsonl", "name": "nan", "path": str(h)})


def test_data_show_cli_names_the_row_of_a_boolean_target(tmp_path):
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    f = _write_jsonl(tmp_path / "b.jsonl", [{"input": "a", "target": True}])
    result = CliRunner().invoke(app, ["data", "show", "jsonl:b", "--path", str(f)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the error box wraps long lines
    assert "b.jsonl" in text and "row 0 (line 1): field 'target' is a boolean (true)" in text, result.output
