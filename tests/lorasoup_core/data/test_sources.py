import json

import pytest

from lorasoup_core.data import DataError, Example, Task, TaskSpec, bbh_cot_prompt, list_tasks, load_task
from lorasoup_core.plugins import UnknownPluginError


def test_every_bbh_task_loads(shared_data):
    names = list_tasks("bbh")
    assert len(names) == 27
    for name in names:
        task = load_task(f"bbh:{name}")
        assert task.metric == "bbh" and len(task.train) == 5 and len(task.test) > 100
        assert not {e.input for e in task.train} & {e.input for e in task.test}
    assert "Q:" in bbh_cot_prompt("navigate") and "canary" not in bbh_cot_prompt("navigate").lower()


def test_gsm8k_gsm_hard_codealpaca(shared_data):
    gsm = load_task("gsm8k:gsm8k")
    assert len(gsm.test) == 1319 and all(e.target.replace("-", "").replace(".", "").isdigit() for e in gsm.test[:50])
    hard = load_task("gsm-hard:gsm-hard")
    assert hard.metric == "pal" and float(hard.test[0].target)
    code = load_task("codealpaca:code")
    assert len(code.train) == 1500 and code.template.startswith("### Instruction")


def test_json_fields_and_hf_source(tmp_path):
    rows = [{"q": f"question {i}", "a": str(i)} for i in range(40)]
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    spec = TaskSpec(source="jsonl", name="mine", path=str(f), fields={"input": "q", "target": "a"}, seed=3)
    task = load_task(spec)
    assert len(task.train) == 20 and task.train[0].input.startswith("question")
    assert load_task(spec).fingerprint == task.fingerprint
    assert load_task(spec.model_copy(update={"seed": 4})).fingerprint != task.fingerprint
    hf = load_task(TaskSpec(source="hf", name="mine", path=str(f), fields={"input": "q", "target": "a"}, seed=3))
    assert {e.input for e in hf.train} == {e.input for e in task.train}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"input": "a", "target": "b"}\n{"input": "c"}\n', "row 1: missing field 'target'"),
        (b'{"input": "a", "target": "b"}\n{"input": \n', "line 2: invalid JSON"),
        (b'{"input": "a\xff", "target": "b"}\n', "invalid UTF-8 at byte 12"),
        (b"\n", "no examples"),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content)
    with pytest.raises(DataError, match="bad.jsonl") as err:
        load_task(TaskSpec(source="jsonl", name="bad", path=str(f)))
    assert message in str(err.value)


def test_train_test_overlap_in_split_files(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"input": "x", "target": "1"}\n{"input": "y", "target": "2"}\n')
    (tmp_path / "test.jsonl").write_text('{"input": "z", "target": "3"}\n{"input": "y", "target": "2"}\n')
    with pytest.raises(DataError, match="test row 1 repeats train row 1"):
        load_task(TaskSpec(source="jsonl", name="d", path=str(tmp_path)))


def test_unknown_names_are_listed(shared_data):
    with pytest.raises(UnknownPluginError, match="known: .*bbh"):
        load_task("nope:x")
    with pytest.raises(DataError, match="available: .*navigate"):
        load_task("bbh:not_a_task")
    with pytest.raises(DataError, match="source:name"):
        load_task("skills")
    with pytest.raises(DataError, match="no examples"):
        Task("empty", []).check()
    assert Example("a", "b") == Example("a", "b")
