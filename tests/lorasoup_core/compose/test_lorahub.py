import pytest

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, CompositionError, compose, few_shot_loss
from tests.lorasoup_core.compose.conftest import skill_task as _task


def test_lorahub_on_seq2seq_finds_the_target_adapter(tiny_t5, t5_pool):
    task = _task("uppercase")
    shots = task.train[:5]
    comp = compose("lorahub", tiny_t5, t5_pool, task, shots, {"budget": 30})
    uniform = compose("uniform", tiny_t5, t5_pool, task, shots)
    base = few_shot_loss(tiny_t5, None, task, shots)
    assert comp.few_shot_loss < min(base, uniform.few_shot_loss) - 0.05, (comp.diagnostics, base)
    assert comp.names[max(range(3), key=lambda i: comp.weights[i])] == "uppercase", comp.weights
    assert len(comp.trace) == 30


def test_population_search_spends_the_budget_in_batches(tiny_llama, tiny_pool, target):
    task, shots = target
    cands = [Candidate(s, tiny_pool[s], AdapterCard.read(tiny_pool[s])) for s in ("add", "count_items", "uppercase")]
    comp = compose("lorahub", tiny_llama, cands, task, shots,
                   {"budget": 42, "population": 4, "optimizer": "CMA", "loss": "per_example",
                    "result": "best_evaluated"})
    assert len(comp.trace) == 42 and len(comp.diagnostics["eval_seconds"]) == 42
    # the returned weights are the best evaluated point: its objective is the trace minimum
    l1 = 0.05 * sum(abs(w) for w in comp.weights) / len(comp.weights)
    assert abs(comp.few_shot_loss + l1 - min(comp.trace)) < 1e-4
    assert comp.few_shot_loss < few_shot_loss(tiny_llama, None, task, shots) - 0.5
    assert comp.names[max(range(3), key=lambda i: comp.weights[i])] == "count_items", comp.weights


def test_unknown_optimizer(tiny_llama, tiny_pool, target):
    task, shots = target
    cands = [Candidate("add", tiny_pool["add"])]
    with pytest.raises(CompositionError, match="unknown nevergrad optimizer 'Nope'"):
        compose("lorahub", tiny_llama, cands, task, shots, {"optimizer": "Nope"})
    with pytest.raises(CompositionError, match="no few-shot examples"):
        compose("lorahub", tiny_llama, cands, task, [])
