import datetime as dt

import pytest

from lorasoup_core.data import COMPOSED_TASKS, UPSTREAM_SKILLS, DataError, load_task
from lorasoup_core.data.prompts import IGNORE, encode


def _check(name: str, inp: str, ans: str) -> bool:
    """An independent solver for each skill, from the input text alone."""
    words = inp.split(": ", 1)[-1].split()
    if name == "add":
        return int(ans) == int(words[1]) + int(words[2])
    if name == "subtract":
        return int(ans) == int(words[3]) - int(words[1])
    if name == "double":
        return int(ans) == 2 * int(words[1])
    if name == "compare":
        return int(ans) == max(int(words[2]), int(words[3]))
    if name == "boolean":
        return ans == str(eval(inp.replace("true", "True").replace("false", "False"))).lower()
    if name == "sort_words":
        return ans.split() == sorted(words)
    if name == "reverse_list":
        return ans.split() == words[::-1]
    if name == "count_items":
        return int(ans) == len(words)
    if name == "first_item":
        return ans == words[0]
    if name == "uppercase":
        return ans == " ".join(words).upper()
    if name == "brackets":
        s = words[0]
        while "()" in s or "[]" in s:
            s = s.replace("()", "").replace("[]", "")
        return ans == ("yes" if not s else "no")
    if name == "date_add":
        d = dt.date.fromisoformat(inp.split()[1])
        return ans == (d + dt.timedelta(days=int(inp.split()[3]))).isoformat()
    if name == "unit_convert":
        factor = {"km to m": 1000, "m to cm": 100, "kg to g": 1000, "hours to minutes": 60, "minutes to seconds": 60}
        unit, x = inp.split(": ")
        return int(ans) == factor[unit] * int(x)
    if name == "count_then_add":
        k = int(inp.split(":")[0].split()[-1])
        return int(ans) == len(words) + k
    if name == "sort_then_first":
        return ans == sorted(words)[0]
    if name == "reverse_then_upper":
        return ans == " ".join(words[::-1]).upper()
    if name == "compare_then_double":
        return int(ans) == 2 * max(int(inp.split()[-1]), int(inp.split()[-2]))
    if name == "add_then_compare":
        nums = [int(t.strip("()")) for t in inp.split() if t.strip("()").isdigit()]
        return int(ans) == max(nums[0] + nums[1], nums[2])
    raise AssertionError(name)


def test_suite_size():
    assert len(UPSTREAM_SKILLS) >= 12 and len(COMPOSED_TASKS) >= 4
    for target, (a, b) in COMPOSED_TASKS.items():
        assert a in UPSTREAM_SKILLS and b in UPSTREAM_SKILLS and target not in UPSTREAM_SKILLS


@pytest.mark.parametrize("name", UPSTREAM_SKILLS + sorted(COMPOSED_TASKS))
def test_answers_are_correct_and_splits_disjoint(name):
    task = load_task(f"skills:{name}")
    assert (len(task.train), len(task.validation), len(task.test)) == (200, 50, 100)
    for ex in task.train[:30] + task.test[:30]:
        assert _check(name, ex.input, ex.target), ex
    inputs = [{e.input for e in task.split(s)} for s in ("train", "validation", "test")]
    assert not (inputs[0] & inputs[2]) and not (inputs[0] & inputs[1]) and not (inputs[1] & inputs[2])


def test_deterministic_by_seed():
    assert load_task("skills:add").fingerprint == load_task("skills:add").fingerprint
    other = load_task({"source": "skills", "name": "add", "seed": 1})
    assert other.fingerprint != load_task("skills:add").fingerprint
    with pytest.raises(DataError, match="unknown skill 'nope'; known: add"):
        load_task("skills:nope")


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_labels_only_on_target_tokens(request, fixture):
    m = request.getfixturevalue(fixture)
    task = load_task("skills:add")
    batch = encode(m.kind, m.tokenizer, [task.prompt(e) for e in task.train[:4]], [e.target for e in task.train[:4]])
    for i, ex in enumerate(task.train[:4]):
        labelled = [t for t in batch["labels"][i].tolist() if t != IGNORE]
        text = m.tokenizer.decode(labelled, skip_special_tokens=True)
        assert text.strip() == ex.target
