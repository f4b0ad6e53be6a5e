import json
import re

import pytest
import torch

from lorasoup_core.bench import evaluate_benchmark, evaluate_task
from lorasoup_core.bench.harness import adapter_model
from lorasoup_core.bench.suites import GENERIC
from lorasoup_core.data import DataError, load_task
from lorasoup_core.plugins import UnknownPluginError
from lorasoup_core.storage import open_store

SLICE = {"bbh": "navigate,date_understanding", "skills": "all", "gsm8k": "all", "gsm-hard": "all"}


def logits(loaded, model=None):
    ids = torch.tensor([[5, 60, 70, 80, 90, 100]])
    model = model or loaded.model
    with torch.no_grad():
        if loaded.kind == "causal":
            return model(input_ids=ids).logits
        return model(input_ids=ids, decoder_input_ids=ids[:, :3]).logits


def assert_clean(loaded, before):
    assert torch.equal(logits(loaded), before)
    assert not any("lora" in n for n, _ in loaded.model.named_modules())
    assert not hasattr(loaded.model, "peft_config")


@pytest.mark.parametrize("benchmark", ["bbh", "skills", "gsm8k", "gsm-hard"])
@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_every_benchmark_runs_in_every_mode(fixture, benchmark, request, shared_data, random_adapters):
    base = request.getfixturevalue(fixture)
    adapter = random_adapters[base.kind]
    before = logits(base)
    # a random tiny model never writes a stop string: 24 new tokens instead of GSM's 256 exercise the same path
    reports = {mode: evaluate_benchmark(base, benchmark, SLICE[benchmark], mode, adapter if mode == "adapter" else None,
                              limit=4, k_shot=2, progress=False,
                              settings={"max_new_tokens": 24} if benchmark.startswith("gsm") else None)
               for mode in ("zero-shot", "icl", "adapter")}
    for mode, rep in reports.items():
        assert rep.rows and all(r.n == 4 and r.ci_low <= r.score <= r.ci_high for r in rep.rows), mode
        assert rep.macro[1] <= rep.macro[0] <= rep.macro[2]
        tp = rep.throughput
        assert tp["examples_per_s"] > 0 and tp["gen_tokens_per_s"] >= 0 and tp["prompt_tokens_per_example"] > 0
        assert tp["examples"] == 4 * len(rep.predictions)
        json.dumps(rep.to_dict())
    assert reports["icl"].throughput["prompt_tokens_per_example"] > \
        reports["zero-shot"].throughput["prompt_tokens_per_example"]
    assert {r.method for r in reports["adapter"].rows} <= {adapter.name, f"{adapter.name}/last_number"}
    if benchmark == "gsm-hard":
        assert [r.method for r in reports["zero-shot"].rows] == ["zero-shot", "zero-shot/last_number"]
        assert "last_number" in reports["icl"].predictions["gsm-hard"][0]
    assert_clean(base, before)


def test_adapter_is_loaded_for_the_block_only(tiny_llama, tiny_t5, random_adapters):
    for base in (tiny_llama, tiny_t5):
        before = logits(base)
        with adapter_model(base, random_adapters[base.kind]) as model:
            assert not torch.allclose(logits(base, model), before)
        assert_clean(base, before)


def test_a_trained_adapter_beats_the_base_and_exclude_drops_the_shots(tiny_llama, tiny_pool):
    task = load_task({"source": "skills", "name": "count_items", "n_test": 16})
    zero = evaluate_task(tiny_llama, task, "zero-shot", progress=False)
    tuned = evaluate_task(tiny_llama, task, "adapter", adapter=tiny_pool["count_items"], progress=False,
                          method_label="count_items-lora")
    assert tuned.rows[0].method == "count_items-lora" and tuned.rows[0].score > zero.rows[0].score + 0.25
    shots = {e.input for e in task.test[:4]}
    rep = evaluate_task(tiny_llama, task, exclude={task.name: shots}, progress=False)
    assert rep.rows[0].n == 12 and not shots & {p["input"] for p in rep.predictions[task.name]}


def test_adapter_from_a_store_uri(tiny_llama, random_adapters, tmp_path):
    art = open_store(f"file://{tmp_path / 'store'}").publish(random_adapters["causal"], "adapters/x/1")
    local = evaluate_benchmark(tiny_llama, "skills", "add", "adapter", random_adapters["causal"], limit=3, progress=False)
    remote = evaluate_benchmark(tiny_llama, "skills", "add", "adapter", art.uri, limit=3, progress=False)
    assert [p["prediction"] for p in remote.predictions["add"]] == \
        [p["prediction"] for p in local.predictions["add"]]


def test_icl_demonstrations_are_seeded_and_never_the_evaluated_example(tiny_llama, shared_data):
    def prompts(seed):
        rep = evaluate_benchmark(tiny_llama, "bbh", "navigate", "icl", limit=6, k_shot=3, seed=seed, progress=False)
        return rep.predictions["navigate"]

    first, again = prompts(0), prompts(0)
    assert [p["prompt"] for p in first] == [p["prompt"] for p in again]
    train = load_task("bbh:navigate").train
    for p in first:
        assert p["prompt"].count(p["input"]) == 1 and p["prompt"].endswith(p["input"] + "\nAnswer:")
        assert sum(e.input in p["prompt"] for e in train) == 3
    gsm = evaluate_benchmark(tiny_llama, "gsm8k", "all", "icl", limit=1, k_shot=2, progress=False).predictions["gsm8k"]
    assert len(re.findall(r"\n#### -?\d", gsm[0]["prompt"])) == 2  # demonstrations show worked answers


def test_bbh_chain_of_thought_prompts(tiny_llama, shared_data):
    rep = evaluate_benchmark(tiny_llama, "bbh", "navigate", "icl", limit=2, cot=True, progress=False)
    prompt = rep.predictions["navigate"][0]["prompt"]
    assert rep.rows[0].method == "cot" and "canary" not in prompt
    assert prompt.count("Let's think step by step.") == 4 and prompt.endswith("A: Let's think step by step.\n")
    with pytest.raises(ValueError, match="mode 'icl'"):
        evaluate_benchmark(tiny_llama, "bbh", "navigate", "zero-shot", cot=True)
    with pytest.raises(ValueError, match="no chain-of-thought"):
        evaluate_benchmark(tiny_llama, "gsm8k", "all", "icl", cot=True)


def test_bad_inputs_fail_clearly(tiny_llama, tiny_t5, shared_data, random_adapters, tmp_path):
    with pytest.raises(UnknownPluginError, match="unknown benchmark 'nope'"):
        evaluate_benchmark(tiny_llama, "nope")
    with pytest.raises(DataError, match="unknown bbh task.*'nope'.*known: boolean_expressions"):
        evaluate_benchmark(tiny_llama, "bbh", "navigate,nope", limit=1)
    with pytest.raises(DataError, match="unknown skills task"):
        evaluate_benchmark(tiny_llama, "skills", "nope", limit=1)
    task = load_task("skills:add")
    with pytest.raises(ValueError, match="unknown mode 'few-shot'"):
        evaluate_task(tiny_llama, task, "few-shot")
    with pytest.raises(ValueError, match="needs an adapter"):
        evaluate_task(tiny_llama, task, "adapter")
    with pytest.raises(ValueError, match="limit must be >= 1"):
        evaluate_task(tiny_llama, task, limit=0)
    with pytest.raises(DataError, match="no test examples left"):
        evaluate_task(tiny_llama, task, exclude={"add": {e.input for e in task.test}})
    with pytest.raises(ValueError, match="no such directory"):
        evaluate_task(tiny_llama, task, "adapter", adapter=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no adapter_config.json"):
        evaluate_task(tiny_llama, task, "adapter", adapter=tmp_path)
    before = logits(tiny_llama)
    with pytest.raises(ValueError, match="t5-lora.*cannot be loaded onto base 'tiny-llama'"):
        evaluate_task(tiny_llama, task, "adapter", adapter=random_adapters["seq2seq"])
    assert_clean(tiny_llama, before)
    # data files: empty, missing fields
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "empty.json").write_text("")
    (tmp_path / "bbh" / "fields.json").write_text(json.dumps({"examples": [{"input": "x", "answer": "y"}]}))
    with pytest.raises(DataError, match="empty.json"):
        evaluate_benchmark(tiny_llama, "bbh", "empty", path=str(tmp_path / "bbh"))
    with pytest.raises(DataError, match="fields.json.*target"):
        evaluate_benchmark(tiny_llama, "bbh", "fields", path=str(tmp_path / "bbh"))


def test_merged_evaluation_matches_the_lora_layers_and_restores_the_base_bit_for_bit(tiny_llama, random_adapters):
    base, path = tiny_llama, random_adapters["causal"]
    weights = {k: v.clone() for k, v in base.model.state_dict().items()}
    with adapter_model(base, path, merge=False) as model:
        layered = logits(base, model)
    with adapter_model(base, path, merge=True) as model:
        merged = logits(base, model)
        merged_weights = {k.replace(".base_layer", ""): v for k, v in base.model.state_dict().items()}
        assert any(not torch.equal(merged_weights[k], weights[k]) for k in weights)  # really merged
    assert torch.allclose(merged, layered, atol=1e-5)
    after = base.model.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(after[k], weights[k]) for k in weights)
    task = load_task({"source": "skills", "name": "add", "n_test": 6})
    kw = {"mode": "adapter", "adapter": path, "progress": False}
    on = evaluate_task(base, task, **kw)
    off = evaluate_task(base, task, benchmark=GENERIC.model_copy(update={"merge_adapter": False}), **kw)
    assert [p["prediction"] for p in on.predictions["add"]] == [p["prediction"] for p in off.predictions["add"]]


def test_shared_demonstrations_are_one_prefix_and_never_an_evaluated_example(tiny_llama, shared_data):
    rep = evaluate_benchmark(tiny_llama, "bbh", "navigate", "icl", limit=6, k_shot=3, progress=False,
                             settings={"icl_demos": "shared"})
    preds = rep.predictions["navigate"]
    heads = {p["prompt"][: p["prompt"].index(p["input"])] for p in preds}
    assert len(heads) == 1
    head = heads.pop()
    assert sum(e.input in head for e in load_task("bbh:navigate").train) == 3
    assert all(p["prompt"].count(p["input"]) == 1 for p in preds)
    with pytest.raises(ValueError, match="icl_demos"):
        evaluate_benchmark(tiny_llama, "bbh", "navigate", "icl", limit=1, settings={"icl_demos": "some"})
