"""Gold targets fed as predictions score 100% on every BBH task, through the harness's scoring path
(generation text cut at the benchmark's stop strings, then its metric)."""

from lorasoup_core.bench import BENCHMARKS
from lorasoup_core.bench.generation import cut_at_stop
from lorasoup_core.bench.harness import score_predictions
from lorasoup_core.data import list_tasks, load_task


def test_gold_targets_score_100_on_every_bbh_task(shared_data):
    config = BENCHMARKS.get("bbh")
    names = list_tasks("bbh")
    assert len(names) == 27
    for name in names:
        task = load_task(f"bbh:{name}")
        examples = task.train + task.validation + task.test
        targets = [e.target for e in examples]
        # what a model emits: a leading space, the answer, then a newline and more text
        generations = [cut_at_stop(f" {t}\nQ: next question", config.stop) for t in targets]
        scores = score_predictions(config, task, generations, targets)
        assert scores == {"bbh": [1.0] * len(targets)}, name
        # a chain of thought ending in the official phrase scores too
        cot = [f"Let's think step by step. So the answer is {t}." for t in targets]
        assert score_predictions(config, task, cot, targets)["bbh"] == [1.0] * len(targets), name
        # someone else's answer is not this one's
        shifted = targets[1:] + targets[:1]
        wrong = score_predictions(config, task, shifted, targets)["bbh"]
        assert all(s == float(a == b) for s, a, b in zip(wrong, shifted, targets, strict=True)), name
