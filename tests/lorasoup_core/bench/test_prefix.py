"""Shared-prefix KV caching and length bucketing: the same tokens as the uncached, unbucketed path."""

import pytest

from lorasoup_core.bench import generate
from lorasoup_core.bench.generation import plan_batches
from lorasoup_core.bench.harness import adapter_model
from lorasoup_core.bench.prefix import MIN_PREFIX_TOKENS, common_prefix_length

DEMOS = "Q: two plus two\nA: 4\n\nQ: three plus five\nA: 8\n\nQ: one plus zero\nA: 1\n\n"
QUERIES = ["Q: 1+1\nA:", "Q: twelve plus thirty, please\nA:", "Q: 9\nA:", "Q: what is seven plus nine exactly?\nA:",
           "Q: 100 + 200 + 300 + 400 + 500\nA:"]
# random tiny models like to stop at once: ask for real bytes (no pad/EOS) so there is text to compare
FORCED = {"min_new_tokens": 10, "suppress_tokens": [0, 1, 2]}


def test_common_prefix_length_leaves_every_row_a_token():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4, 9]]) == 3
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[7, 2], [1, 2]]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 0  # one prompt: nothing to share


@pytest.mark.parametrize("head", ["", "Answer briefly.\n", DEMOS, DEMOS * 3])
@pytest.mark.parametrize("stop", [[], ["\n"], ["Q", "7"]])
def test_prefix_cached_generation_equals_uncached_token_for_token(tiny_llama, head, stop):
    prompts = [head + q for q in QUERIES]
    kw = {"max_new_tokens": 12, "stop": stop, "batch_size": 3, "progress": False}
    extra = FORCED if not stop else {"suppress_tokens": [0, 1, 2]}
    cached = generate(tiny_llama, prompts, prefix_cache=True, **kw, **extra)
    plain = generate(tiny_llama, prompts, prefix_cache=False, **kw, **extra)
    one_by_one = [generate(tiny_llama, [p], prefix_cache=False, **{**kw, "batch_size": 1}, **extra).texts[0]
                  for p in prompts]
    assert cached.texts == plain.texts == one_by_one
    assert any(cached.texts)
    shared = common_prefix_length(tiny_llama.tokenizer(prompts)["input_ids"])
    assert cached.prefix_tokens == (shared if shared >= MIN_PREFIX_TOKENS else 0)
    assert (cached.prefix_tokens > 0) == (len(head) >= MIN_PREFIX_TOKENS)
    # prompt tokens count the prefix once per example, as the uncached path does
    assert cached.prompt_tokens == plain.prompt_tokens and cached.gen_tokens == plain.gen_tokens


def test_prefix_cache_through_a_peft_adapter(tiny_llama, random_adapters):
    prompts = [DEMOS + q for q in QUERIES]
    with adapter_model(tiny_llama, random_adapters["causal"]) as model:
        cached = generate(tiny_llama, prompts, 10, model=model, batch_size=2, progress=False, **FORCED)
        plain = generate(tiny_llama, prompts, 10, model=model, batch_size=2, prefix_cache=False, progress=False,
                         **FORCED)
    base = generate(tiny_llama, prompts, 10, batch_size=2, progress=False, **FORCED)
    assert cached.prefix_tokens > 0 and cached.texts == plain.texts
    assert cached.texts != base.texts  # the adapter was active


def test_seq2seq_ignores_the_prefix_cache(tiny_t5):
    prompts = [DEMOS + q for q in QUERIES]
    res = generate(tiny_t5, prompts, 6, batch_size=2, progress=False)
    assert res.prefix_tokens == 0
    assert res.texts == generate(tiny_t5, prompts, 6, batch_size=2, prefix_cache=False, progress=False).texts


def test_prefix_cached_generation_on_smollm2(smollm2, shared_data):
    """The real model: BBH with 3 shared demonstrations in front, left padding, the BBH stop string."""
    from lorasoup_core.bench import BENCHMARKS
    from lorasoup_core.bench.harness import _prompts, with_settings
    from lorasoup_core.data import load_task

    config = with_settings(BENCHMARKS.get("bbh"), {"icl_demos": "shared"})
    prompts = []
    for name in ("navigate", "boolean_expressions"):
        task = load_task({"source": "bbh", "name": name, "path": str(shared_data / "bbh")})
        prompts.append(_prompts(config, task, task.test[:5], "icl", 3, 0, None))
    for group in prompts:
        kw = {"max_new_tokens": 8, "stop": ["\n"], "batch_size": 3, "progress": False}
        cached = generate(smollm2, group, **kw)  # prefix cache + finished rows leaving the batch
        hf = {"prefix_cache": False, "drop_finished": False}  # HF's generate on the full prompts
        plain = generate(smollm2, group, **hf, **kw)
        one_by_one = generate(smollm2, group, **hf, **{**kw, "batch_size": 1})
        assert cached.prefix_tokens > 30  # the 3 demonstrations
        assert cached.texts == plain.texts == one_by_one.texts and any(cached.texts)


def test_plan_batches_groups_similar_lengths_within_the_token_budget():
    lengths = [5, 40, 12, 40, 3, 25, 7, 33]
    batches = plan_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)
    assert all(len(b) <= 3 for b in batches)
    budget = plan_batches(lengths, batch_size=8, max_batch_tokens=100, extra_tokens=10)
    assert all(len(b) * (lengths[b[0]] + 10) <= 100 or len(b) == 1 for b in budget)
    assert len(plan_batches([50, 10], batch_size=4, max_batch_tokens=20)) == 2  # an over-long row stands alone


def test_bucketed_generation_restores_prompt_order(tiny_llama):
    prompts = [DEMOS[: 7 * i + 3] + q for i, q in enumerate(QUERIES * 2)]
    kw = {"max_new_tokens": 6, "progress": False, **FORCED}
    budgeted = generate(tiny_llama, prompts, batch_size=4, max_batch_tokens=120, **kw)
    singles = [generate(tiny_llama, [p], batch_size=1, **kw).texts[0] for p in prompts]
    assert budgeted.texts == singles
