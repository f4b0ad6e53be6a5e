import datetime as dt

import pytest

from lorasoup_core.data import COMPOSED_TASKS, UPSTREAM_SKILLS, DataError, Example, load_task
from lorasoup_core.data.prompts import IGNORE, encode

UNIT_FACTORS = {"km to m": 1000, "m to cm": 100, "kg to g": 1000, "hours to minutes": 60, "minutes to seconds": 60}


def _brackets(s: str) -> str:
    while "()" in s or "[]" in s:
        s = s.replace("()", "").replace("[]", "")
    return "no" if s else "yes"


# Independent solvers for the upstream skills, written from the input format alone.
SOLVE = {
    "add": lambda x: str(int(x.split()[1]) + int(x.split()[2])),
    "subtract": lambda x: str(int(x.split()[3]) - int(x.split()[1])),
    "double": lambda x: str(2 * int(x.split()[1])),
    "compare": lambda x: str(max(int(x.split()[2]), int(x.split()[3]))),
    "boolean": lambda x: str(eval(x.replace("true", "True").replace("false", "False"))).lower(),  # noqa: S307
    "sort_words": lambda x: " ".join(sorted(x.split(": ")[1].split())),
    "reverse_list": lambda x: " ".join(x.split(": ")[1].split()[::-1]),
    "count_items": lambda x: str(len(x.split(": ")[1].split())),
    "first_item": lambda x: x.split(": ")[1].split()[0],
    "uppercase": lambda x: x.split(": ")[1].upper(),
    "brackets": lambda x: _brackets(x.split(": ")[1]),
    "date_add": lambda x: (dt.date.fromisoformat(x.split()[1]) + dt.timedelta(days=int(x.split()[3]))).isoformat(),
    "unit_convert": lambda x: str(UNIT_FACTORS[x.split(": ")[0]] * int(x.split(": ")[1])),
}


def _chain(name: str, x: str) -> tuple[tuple[str, str], str, str]:
    """Solve a composed input by rewriting it into the two upstream skills' formats:
    returns (the skills used, the first skill's output, the final answer)."""
    if name == "count_then_add":
        head, items = x.split(": ")
        mid = SOLVE["count_items"](f"count: {items}")
        return ("count_items", "add"), mid, SOLVE["add"](f"add {mid} {head.split()[-1]}")
    if name == "sort_then_first":
        mid = SOLVE["sort_words"](f"sort: {x.split(': ')[1]}")
        return ("sort_words", "first_item"), mid, SOLVE["first_item"](f"first: {mid}")
    if name == "reverse_then_upper":
        mid = SOLVE["reverse_list"](f"reverse: {x.split(': ')[1]}")
        return ("reverse_list", "uppercase"), mid, SOLVE["uppercase"](f"upper: {mid}")
    if name == "compare_then_double":
        a, b = x.split()[-2:]
        mid = SOLVE["compare"](f"larger of {a} {b}")
        return ("compare", "double"), mid, SOLVE["double"](f"double {mid}")
    if name == "add_then_compare":
        a, b, c = (t.strip("()") for t in x.split()[-3:])
        mid = SOLVE["add"](f"add {a} {b}")
        return ("add", "compare"), mid, SOLVE["compare"](f"larger of {mid} {c}")
    raise AssertionError(f"no chain for {name}")


def test_suite_size():
    assert len(UPSTREAM_SKILLS) >= 12 and len(COMPOSED_TASKS) >= 4
    assert set(SOLVE) == set(UPSTREAM_SKILLS)
    for target, (a, b) in COMPOSED_TASKS.items():
        assert a in UPSTREAM_SKILLS and b in UPSTREAM_SKILLS and target not in UPSTREAM_SKILLS


@pytest.mark.parametrize("name", UPSTREAM_SKILLS)
def test_upstream_answers_match_an_independent_solver(name):
    task = load_task(f"skills:{name}")
    assert (len(task.train), len(task.validation), len(task.test)) == (200, 50, 100)
    assert task.metric == "exact_match"
    for ex in task.train[:40] + task.validation[:10] + task.test[:40]:
        assert SOLVE[name](ex.input) == ex.target, ex


@pytest.mark.parametrize("name", sorted(COMPOSED_TASKS))
def test_composed_tasks_chain_two_upstream_skills(name):
    task = load_task(f"skills:{name}")
    needs_both = 0
    for ex in task.train[:50] + task.test[:50]:
        skills, mid, answer = _chain(name, ex.input)
        assert skills == COMPOSED_TASKS[name]
        assert answer == ex.target, ex
        needs_both += mid != answer
    # The first skill's output alone is rarely the answer (add_then_compare: only when the sum wins, ~55%).
    assert needs_both >= 40


@pytest.mark.parametrize("name", UPSTREAM_SKILLS + sorted(COMPOSED_TASKS))
def test_splits_are_disjoint_and_short(name):
    task = load_task(f"skills:{name}")
    inputs = [[e.input for e in task.split(s)] for s in ("train", "validation", "test")]
    assert all(len(set(i)) == len(i) for i in inputs)  # no repeats inside a split either
    train, val, test = map(set, inputs)
    assert not (train & test) and not (train & val) and not (val & test)
    assert max(len(e.input) for s in ("train", "validation", "test") for e in task.split(s)) < 80
    assert max(len(e.target) for e in task.train) <= 30


def test_deterministic_by_seed_and_sizes():
    assert load_task("skills:add").fingerprint == load_task("skills:add").fingerprint
    other = load_task({"source": "skills", "name": "add", "seed": 1})
    assert other.fingerprint != load_task("skills:add").fingerprint
    assert not {e.input for e in other.test} & {e.input for e in other.train}
    small = load_task({"source": "skills", "name": "add", "n_train": 7, "n_validation": 0, "n_test": 3})
    assert (len(small.train), len(small.validation), len(small.test)) == (7, 0, 3)
    # A smaller train split is a prefix of the default one (same stream), so caps do not reshuffle.
    assert small.train == load_task("skills:add").train[:7]


def test_skill_errors():
    with pytest.raises(DataError, match="unknown skill 'nope'; known: add"):
        load_task("skills:nope")
    # `double` has only 399 distinct inputs.
    with pytest.raises(DataError, match="skills:double: only 399 distinct new inputs for the train split, 500 asked"):
        load_task({"source": "skills", "name": "double", "n_train": 500})


def test_example_meta_stays_out_of_equality():
    assert Example("a", "b", meta={"x": 1}) == Example("a", "b")
    assert hash(Example("a", "b", meta={"x": 1})) == hash(Example("a", "b"))


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_labels_only_on_target_tokens(request, fixture):
    m = request.getfixturevalue(fixture)
    task = load_task("skills:count_then_add")
    examples = task.train[:4]
    batch = encode(m.kind, m.tokenizer, [task.prompt(e) for e in examples], [e.target for e in examples])
    for i, ex in enumerate(examples):
        labelled = [t for t in batch["labels"][i].tolist() if t != IGNORE]
        assert m.tokenizer.decode(labelled, skip_special_tokens=True).strip() == ex.target
        if m.kind == "causal":
            # Every position before the target is masked: the prompt's tokens carry no loss.
            ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
            first = next(j for j, t in enumerate(labels) if t != IGNORE)
            assert m.tokenizer.decode(ids[:first], skip_special_tokens=True) == task.prompt(ex)
            assert all(t == IGNORE for t in labels[:first])
            n_real = int(batch["attention_mask"][i].sum())
            assert all(t == IGNORE for t in labels[n_real:])  # padding carries no loss either
