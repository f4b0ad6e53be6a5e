"""One scoring spec per task: an experiment's target is scored with its data source's registered benchmark
(stop strings, budget, demonstrations, metric, extractor) unless the config overrides a field, and answer
extraction is a named step before the metric."""

from __future__ import annotations

import random

import pytest

from lorasoup_core.bench import answers
from lorasoup_core.bench.extract import EXTRACTORS
from lorasoup_core.bench.harness import score_predictions
from lorasoup_core.bench.metrics import PAL_ABS_TOL, PAL_REL_TOL, score_all
from lorasoup_core.bench.suites import BENCHMARKS, GENERIC, scoring_spec, with_settings
from lorasoup_core.config import ConfigError
from lorasoup_core.data import Example, Task
from lorasoup_core.experiment import load_experiment
from lorasoup_core.experiment.config import EvalConfig


def test_a_target_is_scored_with_its_benchmarks_spec():
    spec = EvalConfig().scoring_for("gsm-hard")
    pal = BENCHMARKS.get("gsm-hard")
    # PAL's: the program runs to its closing fence within 256 tokens, one shared prompt of worked programs
    assert (spec.stop, spec.max_new_tokens, spec.metric, spec.demo_answer, spec.icl_demos) == (
        pal.stop, 256, "pal", "code", "shared") and "```" in spec.stop
    assert EvalConfig().scoring_for("bbh").max_new_tokens == BENCHMARKS.get("bbh").max_new_tokens == 24
    assert EvalConfig().scoring_for("skills") == BENCHMARKS.get("skills")
    assert EvalConfig().scoring_for("jsonl") == GENERIC and scoring_spec("hf") == GENERIC
    # a field the config sets wins; the others stay the benchmark's
    spec = EvalConfig(max_new_tokens=64, icl_demos="per_example", scoring={"stop": ["\n\n"]}).scoring_for("gsm-hard")
    assert (spec.max_new_tokens, spec.icl_demos, spec.stop, spec.metric) == (64, "per_example", ("\n\n",), "pal")


def test_a_bad_scoring_field_is_one_error_at_load_time():
    for change, message in (("eval.scoring={stopp: [x]}", r"eval.scoring.*stopp: Extra inputs are not permitted"),
                            ("eval.scoring={extract: nope}", r"unknown answer extractor 'nope'; known: bbh, code"),
                            ("eval.scoring={max_new_tokens: 0}", r"max_new_tokens: Input should be greater than 0")):
        with pytest.raises(ConfigError, match=message):
            load_experiment("configs/demo.yaml", [change])


def _generations(seed: int) -> list[tuple[str, str]]:
    """Generations of every answer shape, right and wrong, for every BBH target format."""
    rng = random.Random(seed)
    targets = ["(A)", "(C)", "Yes", "No", "True", "valid", "invalid", "24", "-7", "apple banana", "] ) }"]
    texts = ["(A)", "C)", "So the answer is (C).", "yes, it is", "No.", "true", "The argument is invalid.", "valid",
             "24", "The answer is 1,024.", "-7 apples", "x24", "apple, banana.", "] ) }", "] )", "", "maybe",
             "#### 24", "The answer is -7"]
    return [(rng.choice(texts) + rng.choice(["", "\n", " and more"]), rng.choice(targets)) for _ in range(400)]


def test_each_metric_through_its_extractor_scores_as_the_combined_check():
    """The extract-then-compare path against the one-step checks it was split from (`answers`)."""
    gens = _generations(0)
    predictions, targets = [g for g, _ in gens], [t for _, t in gens]
    assert score_all("bbh", predictions, targets) == [float(answers.bbh_correct(g, t)) for g, t in gens]
    assert score_all("exact_match", predictions, targets) == [float(answers.exact_match(g, t)) for g, t in gens]
    numeric = [(g, t) for g, t in gens if answers.parse_number(t) is not None]
    assert score_all("gsm8k", [g for g, _ in numeric], [t for _, t in numeric]) == [
        float(answers.numbers_close(answers.extract_gsm8k_number(g), answers.gsm8k_reference(t))) for g, t in numeric]
    assert score_all("last_number", [g for g, _ in numeric], [t for _, t in numeric]) == [
        float(answers.numbers_close(answers.last_number(g), float(t), rel_tol=PAL_REL_TOL, abs_tol=PAL_ABS_TOL))
        for g, t in numeric]
    # a number far from 1 survives the answer's text form exactly (1e-05, 1e+16 are repr-formatted)
    assert score_all("last_number", ["0.00001", "it is 10000000000000000"], [1e-05, 1e16]) == [1.0, 1.0]


def test_a_new_answer_format_is_one_registered_extractor():
    task = Task("t", train=[], test=[Example("q", "42")], metric="exact_match")
    generations = ["reasoning... ANSWER=42", "ANSWER=41", "42"]
    plain = score_predictions(GENERIC, task, generations, ["42"] * 3)
    assert plain["exact_match"] == [0.0, 0.0, 1.0]
    if "after_equals" not in EXTRACTORS:
        @EXTRACTORS.register("after_equals")
        def after_equals(generation: str, target: str) -> str | None:
            return generation.rpartition("=")[2] if "=" in generation else None
    spec = with_settings(GENERIC, {"extract": "after_equals"})
    assert score_predictions(spec, task, generations, ["42"] * 3)["exact_match"] == [1.0, 0.0, 0.0]
