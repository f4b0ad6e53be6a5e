import pytest

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, CompositionError
from lorasoup_core.data import load_task
from lorasoup_core.plugins import UnknownPluginError
from lorasoup_core.selection import FILTERS, FilterSpec, select_candidates

TARGET = "count_items"


@pytest.fixture(scope="module")
def target():
    task = load_task({"source": "skills", "name": TARGET, "n_train": 20, "n_validation": 0, "n_test": 8})
    return task, task.train[:5]


def _cands(tiny_pool):
    return [Candidate(s, p, AdapterCard.read(p)) for s, p in tiny_pool.items()]


@pytest.mark.parametrize("name", ["embedding", "loss"])
def test_informed_filters_keep_the_target_adapter(tiny_llama, tiny_pool, target, name):
    task, shots = target
    sel = select_candidates(tiny_llama, _cands(tiny_pool), task, shots, [FilterSpec(name=name, k=3)])
    assert len(sel.candidates) == 3 and TARGET in [c.name for c in sel.candidates], sel.log
    assert set(sel.scores) == {c.name for c in sel.candidates}
    ordered = [sel.scores[c.name] for c in sel.candidates]
    assert ordered == sorted(ordered, reverse=True) and any(line.startswith(f"{name}: kept 3 of 11") for line in sel.log)


def test_random_is_seeded_and_chains(tiny_llama, tiny_pool, target):
    task, shots = target
    pick = [[c.name for c in select_candidates(tiny_llama, _cands(tiny_pool), task, shots,
                                               [FilterSpec(name="random", k=4, seed=s)]).candidates] for s in (1, 1, 2)]
    assert pick[0] == pick[1] and pick[0] != pick[2] and len(pick[0]) == 4
    # chain: random 8 then embedding 2 out of those; `k` caps the last filter
    sel = select_candidates(tiny_llama, _cands(tiny_pool), task, shots,
                            [FilterSpec(name="random", k=8, seed=3), "embedding"], k=2)
    assert len(sel.candidates) == 2
    assert [line.split(":")[0] for line in sel.log] == ["random", "embedding"]
    assert "kept 8 of 11" in sel.log[0] and "kept 2 of 8" in sel.log[1]


def test_constraints_drop_foreign_and_incompatible_adapters(tiny_llama, tiny_pool, target):
    task, shots = target
    card = AdapterCard.read(tiny_pool["add"])
    foreign = Candidate("alien", tiny_pool["add"], card.model_copy(update={"base_fingerprint": "x", "base_model": "other"}))
    odd = Candidate("odd", tiny_pool["double"], card.model_copy(update={"target_modules": ["o_proj"]}))
    sel = select_candidates(tiny_llama, _cands(tiny_pool) + [foreign, odd], task, shots, [FilterSpec(name="random", k=20)])
    names = {c.name for c in sel.candidates}
    assert "alien" not in names and "odd" not in names and len(names) == 11
    assert any("dropped alien: trained on other" in line for line in sel.log)
    assert any("dropped odd: adapts ['o_proj']" in line for line in sel.log)
    with pytest.raises(CompositionError, match="no candidate adapters left"):
        select_candidates(tiny_llama, [foreign], task, shots, ["random"])


def test_bad_selection_inputs(tiny_llama, tiny_pool, target):
    task, shots = target
    assert {"random", "loss", "embedding", "same_base", "compatible"} <= set(FILTERS.names())
    with pytest.raises(UnknownPluginError, match="unknown candidate filter 'nope'; known: arrow, compatible, embedding"):
        select_candidates(tiny_llama, _cands(tiny_pool), task, shots, [FilterSpec(name="nope")])
    with pytest.raises(CompositionError, match="empty"):
        select_candidates(tiny_llama, [], task, shots, ["random"])
    twice = _cands(tiny_pool)[:2] * 2
    with pytest.raises(CompositionError, match="repeated: add"):
        select_candidates(tiny_llama, twice, task, shots, ["random"])
    no_embedding = Candidate("bare", tiny_pool["add"], None)
    with pytest.raises(CompositionError, match="no candidate adapters left .*skipped adapter 'bare': no stored embedding"):
        select_candidates(tiny_llama, [no_embedding], task, shots, ["embedding"])


def test_oracle_keeps_a_composed_targets_own_skills_and_exclude_leaves_the_target_out(tiny_llama, tiny_pool):
    composed = load_task({"source": "skills", "name": "count_then_add", "n_train": 10, "n_validation": 0,
                          "n_test": 4})
    assert composed.components == ("count_items", "add")
    sel = select_candidates(tiny_llama, _cands(tiny_pool), composed, composed.train[:5], [FilterSpec(name="oracle", k=5)])
    assert sorted(c.name for c in sel.candidates) == ["add", "count_items"], sel.log
    plain = load_task({"source": "skills", "name": TARGET, "n_train": 10, "n_validation": 0, "n_test": 4})
    with pytest.raises(CompositionError, match=f"oracle filter: target '{TARGET}' does not name"):
        select_candidates(tiny_llama, _cands(tiny_pool), plain, plain.train[:5], ["oracle"])
    # leave-one-out: the target's own adapter is never a candidate, even for the filter that would rank it first
    sel = select_candidates(tiny_llama, _cands(tiny_pool), plain, plain.train[:5], [FilterSpec(name="loss", k=3)],
                            exclude={TARGET})
    assert TARGET not in [c.name for c in sel.candidates] and len(sel.candidates) == 3
    assert sel.log[0] == f"excluded: {TARGET}" and "kept 3 of 10" in sel.log[1]
