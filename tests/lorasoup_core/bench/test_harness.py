import pytest
import torch

from lorasoup_core.bench import evaluate, evaluate_task
from lorasoup_core.bench.metrics import score_all
from lorasoup_core.data import DataError, list_tasks, load_task
from lorasoup_core.plugins import UnknownPluginError


def test_gold_targets_score_100_on_every_bbh_task(shared_data):
    for name in list_tasks("bbh"):
        task = load_task(f"bbh:{name}")
        targets = [e.target for e in task.test]
        assert score_all(task.metric, targets, targets) == [1.0] * len(targets), name
        wrong = targets[1:] + targets[:1]
        assert sum(score_all(task.metric, wrong, targets)) < len(targets), name


@pytest.mark.parametrize("benchmark", ["bbh", "skills", "gsm8k", "gsm-hard"])
def test_every_benchmark_runs_on_a_tiny_model(tiny_llama, shared_data, benchmark):
    tasks = "navigate,date_understanding" if benchmark == "bbh" else "all"
    zero = evaluate(tiny_llama, benchmark, tasks, "zero-shot", limit=3, progress=False)
    icl = evaluate(tiny_llama, benchmark, tasks, "icl", limit=3, k_shot=2, progress=False)
    for rep in (zero, icl):
        assert rep.rows and all(r.n == 3 and r.ci_low <= r.score <= r.ci_high for r in rep.rows)
        assert rep.macro is not None and rep.throughput["examples_per_s"] > 0
    assert icl.throughput["prompt_tokens_per_example"] > zero.throughput["prompt_tokens_per_example"]
    if benchmark == "gsm-hard":
        assert {r.method for r in zero.rows} == {"zero-shot", "zero-shot/last_number"}


def test_adapter_mode_scores_a_trained_adapter_and_leaves_the_base_clean(tiny_llama, tiny_pool):
    task = load_task({"source": "skills", "name": "count_items", "n_test": 16})
    ids = torch.randint(0, 250, (1, 8))
    before = tiny_llama.model(ids).logits
    zero = evaluate_task(tiny_llama, task, "zero-shot", progress=False)
    tuned = evaluate_task(tiny_llama, task, "adapter", adapter=tiny_pool["count_items"], progress=False,
                          method_label="count_items-lora")
    assert tuned.rows[0].method == "count_items-lora" and tuned.rows[0].score > zero.rows[0].score
    assert torch.equal(tiny_llama.model(ids).logits, before)
    assert not any("lora" in n for n, _ in tiny_llama.model.named_modules())
    shots = {task.name: {e.input for e in task.test[:4]}}
    assert evaluate_task(tiny_llama, task, exclude=shots, progress=False).rows[0].n == 12


def test_bad_inputs(tiny_llama, shared_data, tmp_path):
    with pytest.raises(UnknownPluginError, match="unknown benchmark 'nope'"):
        evaluate(tiny_llama, "nope")
    with pytest.raises(DataError, match="no BBH task 'nope'"):
        evaluate(tiny_llama, "bbh", "nope", limit=1)
    with pytest.raises(ValueError, match="unknown mode"):
        evaluate_task(tiny_llama, load_task("skills:add"), "few-shot")
    with pytest.raises(ValueError, match="needs an adapter"):
        evaluate_task(tiny_llama, load_task("skills:add"), "adapter")
