import json

import pytest

from lorasoup_core.data import (
    SOURCES,
    DataError,
    Task,
    TaskSpec,
    UnknownSourceError,
    bbh_cot_prompt,
    list_tasks,
    load_task,
)
from lorasoup_core.plugins import UnknownPluginError


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_every_bbh_task_loads(shared_data):
    names = list_tasks("bbh")
    assert len(names) == 27 and "navigate" in names
    for name in names:
        raw = json.loads((shared_data / "bbh" / f"{name}.json").read_text())["examples"]
        task = load_task(f"bbh:{name}")
        assert task.metric == "bbh" and task.template == "{input}\nAnswer:"
        assert (len(task.train), len(task.validation)) == (5, 0)
        n_unique = len({r["input"] for r in raw})
        assert len(task.train) + len(task.test) == n_unique  # nothing lost but repeated inputs
        assert not {e.input for e in task.train} & {e.input for e in task.test}
        gold = {r["input"]: r["target"] for r in raw}
        assert all(gold[e.input] == e.target for e in task.train + task.test[:20] if e.input in gold)
        cot = bbh_cot_prompt(name)
        assert cot.count("Q:") == 3 and "canary" not in cot.lower() and not cot.startswith("-")


def test_bbh_split_is_seeded(shared_data):
    a, b = load_task("bbh:navigate"), load_task("bbh:navigate")
    assert a.fingerprint == b.fingerprint
    c = load_task({"source": "bbh", "name": "navigate", "seed": 1})
    assert c.fingerprint != a.fingerprint and {e.input for e in c.train} != {e.input for e in a.train}
    d = load_task({"source": "bbh", "name": "navigate", "n_train": 20, "n_validation": 10, "n_test": 50})
    assert (len(d.train), len(d.validation), len(d.test)) == (20, 10, 50)
    one = load_task({"source": "bbh", "name": "navigate", "path": str(shared_data / "bbh" / "navigate.json")})
    assert one.fingerprint == a.fingerprint


def test_gsm8k(shared_data):
    gsm = load_task("gsm8k:gsm8k")
    assert gsm.metric == "gsm8k" and (len(gsm.train), len(gsm.validation), len(gsm.test)) == (7423, 50, 1319)
    for ex in gsm.test[:50] + gsm.train[:50]:
        float(ex.target)
        assert "," not in ex.target
        assert ex.meta["answer"].rstrip().endswith(ex.target) or "," in ex.meta["answer"].splitlines()[-1]
        assert "####" in ex.meta["answer"]
    assert gsm.test[0].target == "18"  # the official order of the test file is kept
    assert load_task("gsm8k:gsm8k").fingerprint == gsm.fingerprint
    assert load_task({"source": "gsm8k", "name": "gsm8k", "seed": 1}).fingerprint != gsm.fingerprint
    capped = load_task({"source": "gsm8k", "name": "gsm8k", "n_train": 100, "n_validation": 10, "n_test": 20})
    assert (len(capped.train), len(capped.validation), len(capped.test)) == (100, 10, 20)


def test_gsm_hard_and_codealpaca(shared_data):
    hard = load_task("gsm-hard:gsm-hard")
    assert hard.metric == "pal" and len(hard.train) == 4 and len(hard.train) + len(hard.test) == 50
    assert all(isinstance(float(e.target), float) for e in hard.test)
    assert "def solution" in hard.test[0].meta["code"]
    assert "solution()" in hard.prompt(hard.test[0])
    code = load_task("codealpaca:codealpaca")
    assert (len(code.train), len(code.validation)) == (1500, 100) and code.metric == "exact_match"
    assert code.template.startswith("### Instruction") and len(code.test) > 300
    assert list_tasks("gsm8k") == ["gsm8k"] and list_tasks("codealpaca") == ["codealpaca"]


def test_json_fields_and_hf_source(tmp_path):
    f = _write_jsonl(tmp_path / "mine.jsonl", [{"q": f"question {i}", "a": str(i)} for i in range(40)])
    spec = TaskSpec(source="jsonl", name="mine", path=str(f), fields={"input": "q", "target": "a"}, seed=3)
    task = load_task(spec)
    assert (len(task.train), len(task.validation), len(task.test)) == (20, 4, 16)
    assert task.train[0].input.startswith("question")
    assert load_task(spec).fingerprint == task.fingerprint
    assert load_task(spec.model_copy(update={"seed": 4})).fingerprint != task.fingerprint
    # The same file through `datasets` gives the same split.
    hf = load_task(spec.model_copy(update={"source": "hf"}))
    assert hf.fingerprint == task.fingerprint
    # A JSON object holding its rows under a key, with the task's own template and metric.
    (tmp_path / "obj.json").write_text(json.dumps({"rows": [{"input": f"x{i}", "target": "y"} for i in range(10)]}))
    obj = load_task({"source": "json", "name": "obj", "path": str(tmp_path / "obj.json"), "fields": {"list": "rows"},
                     "template": "Q: {input}\nA:", "metric": "bbh"})
    assert obj.prompt(obj.train[0]).startswith("Q: x") and obj.metric == "bbh"
    assert list_tasks("json", str(tmp_path)) == ["mine", "obj"]
    assert load_task({"source": "json", "name": "obj", "path": str(tmp_path), "fields": {"list": "rows"}}).train


@pytest.mark.parametrize("source", ["jsonl", "hf"])
def test_official_split_files(tmp_path, source):
    _write_jsonl(tmp_path / "train.jsonl", [{"input": f"t{i}", "target": "1"} for i in range(30)])
    _write_jsonl(tmp_path / "test.jsonl", [{"input": f"s{i}", "target": "2"} for i in range(12)])
    task = load_task({"source": source, "name": "d", "path": str(tmp_path), "n_validation": 5, "n_test": 10})
    assert (len(task.train), len(task.validation), len(task.test)) == (25, 5, 10)
    assert {e.input for e in task.test} <= {f"s{i}" for i in range(12)}
    _write_jsonl(tmp_path / "validation.jsonl", [{"input": f"v{i}", "target": "3"} for i in range(4)])
    task = load_task({"source": source, "name": "d", "path": str(tmp_path), "n_train": 8})
    assert (len(task.train), len(task.validation), len(task.test)) == (8, 4, 12)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", b'{"input": "a", "target": "b"}\n\n{"input": "c"}\n', "row 1 (line 3): missing field 'target'"),
        ("bad.json", b'[{"input": "a", "target": "b"}, {"target": "c"}]', "row 1: missing field 'input'"),
        ("bad.json", b'[{"input": "a", "target": "b"}, "oops"]', "row 1: expected an object, got str"),
        ("bad.jsonl", b'{"input": "a", "target": "b"}\n{"input": \n', "line 2: invalid JSON"),
        ("bad.json", b'[\n{"input": "a", "target": "b"},\n{"input" "c"}]', "invalid JSON at line 3"),
        ("bad.jsonl", b'{"input": "a", "target": "b"}\n{"input": "a\xff", "target": "b"}\n',
         "invalid UTF-8 at byte 42 (line 2)"),
        ("bad.jsonl", b"\n", "no examples"),
        ("bad.json", b"[]", "no examples"),
        ("bad.json", b'{"rows": []}', "no 'examples' list in the top-level object"),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(DataError, match=name.replace(".", r"\.")) as err:
        load_task(TaskSpec(source="jsonl", name="bad", path=str(f)))
    assert message in str(err.value)


def test_bad_source_files(tmp_path):
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "t.json").write_text(json.dumps({"examples": [{"input": "a", "target": "b"}, {"input": "c"}]}))
    with pytest.raises(DataError, match=r"t\.json: row 1: missing field 'target'"):
        load_task({"source": "bbh", "name": "t", "path": str(tmp_path / "bbh")})
    (tmp_path / "bbh" / "u.json").write_bytes(b'{"examples": [{"input": "\xc3(", "target": "b"}]}')
    with pytest.raises(DataError, match=r"u\.json: invalid UTF-8 at byte 25 \(line 1\)"):
        load_task({"source": "bbh", "name": "u", "path": str(tmp_path / "bbh")})
    with pytest.raises(DataError, match=r"no CoT prompt for BBH task 't'"):
        bbh_cot_prompt("t", str(tmp_path / "bbh"))
    (tmp_path / "gsm8k").mkdir()
    _write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [{"question": "q", "answer": "2 #### 2"}])
    _write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [{"question": "p", "answer": "5"}])
    with pytest.raises(DataError, match=r"test\.jsonl: row 0 \(line 1\): answer has no final '#### <number>' line"):
        load_task({"source": "gsm8k", "name": "g", "path": str(tmp_path / "gsm8k")})
    hard = _write_jsonl(tmp_path / "hard.jsonl", [{"input": "q", "code": "", "target": 1.5},
                                                  {"input": "r", "code": "", "target": "many"}])
    with pytest.raises(DataError, match=r"hard\.jsonl: row 1 \(line 2\): target 'many' is not a number"):
        load_task({"source": "gsm-hard", "name": "h", "path": str(hard)})
    ca = tmp_path / "ca.json"
    ca.write_text(json.dumps([{"instruction": "do", "output": "x"}, {"instruction": "do it"}]))
    with pytest.raises(DataError, match=r"ca\.json: row 1: missing field 'output'"):
        load_task({"source": "codealpaca", "name": "c", "path": str(ca)})


@pytest.mark.parametrize("source", ["jsonl", "hf"])
def test_train_test_overlap_names_the_row(tmp_path, source):
    _write_jsonl(tmp_path / "train.jsonl", [{"input": "x", "target": "1"}, {"input": "y", "target": "2"}])
    _write_jsonl(tmp_path / "test.jsonl", [{"input": "z", "target": "3"}, {"input": "y", "target": "2"}])
    where = tmp_path / "test.jsonl" if source == "jsonl" else tmp_path
    with pytest.raises(DataError, match=f"{where}: task 'd': 1 of 2 test inputs also appear in the train split"
                                        r".*first: test row 1 \('y'\)"):
        load_task({"source": source, "name": "d", "path": str(tmp_path), "n_validation": 0})


def test_missing_data_dir_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("LORASOUP_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="LORASOUP_DATA_DIR is not set; pass `path:`"):
        load_task("bbh:navigate")
    monkeypatch.setenv("LORASOUP_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=f"{tmp_path / 'gsm8k'}: not found .*LORASOUP_DATA_DIR"):
        load_task("gsm8k:gsm8k")
    with pytest.raises(DataError, match="nowhere.json: no such file"):
        load_task({"source": "jsonl", "name": "x", "path": str(tmp_path / "nowhere.json")})


def test_hub_ids_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="nobody-here/no-such-dataset: cannot load with datasets"):
        load_task({"source": "hf", "name": "x", "path": "nobody-here/no-such-dataset"})
    with pytest.raises(DataError, match="nobody-here/bbh: cannot"):
        load_task({"source": "bbh", "name": "navigate", "path": "nobody-here/bbh"})
    with pytest.raises(DataError, match="needs `path:`"):
        load_task({"source": "hf", "name": "x"})


def test_unknown_names_are_listed(shared_data):
    with pytest.raises(UnknownSourceError, match="unknown data source 'nope'; known: bbh, codealpaca") as err:
        load_task("nope:x")
    assert isinstance(err.value, DataError) and isinstance(err.value, UnknownPluginError)
    with pytest.raises(DataError, match="unknown data source"):
        list_tasks("nope")
    with pytest.raises(DataError, match="available: .*navigate"):
        load_task("bbh:not_a_task")
    with pytest.raises(DataError, match="expected 'source:name'"):
        load_task("skills")
    with pytest.raises(DataError, match="n_train: Input should be greater than or equal to 0"):
        load_task({"source": "skills", "name": "add", "n_train": -1})
    with pytest.raises(DataError, match="colour: Extra inputs are not permitted"):
        load_task({"source": "skills", "name": "add", "colour": "red"})
    with pytest.raises(DataError, match="task 'empty' has no examples"):
        Task("empty", []).check()
    with pytest.raises(DataError, match="cannot list its tasks"):
        list_tasks("hf")
    assert {"bbh", "skills", "gsm8k", "gsm-hard", "codealpaca", "json", "jsonl", "hf"} <= set(SOURCES.names())


def test_bbh_template_with_the_task_description(shared_data):
    """The official BBH layout without exemplars: the task's description, then Q:/A:."""
    from lorasoup_core.data.sources.bbh import DESCRIBED_TEMPLATE

    task = load_task({"source": "bbh", "name": "navigate", "template": DESCRIBED_TEMPLATE})
    prompt = task.prompt(task.test[0])
    assert prompt.startswith("Given a series of navigation instructions, determine whether one would end up back "
                             "at the starting point.\n\nQ: If you follow these instructions")
    assert prompt.endswith("\nA:") and "{" not in prompt
    assert load_task("bbh:navigate").prompt("x") == "x\nAnswer:"
