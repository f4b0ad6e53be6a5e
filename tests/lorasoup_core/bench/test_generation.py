import pytest

from lorasoup_core.bench import generate
from lorasoup_core.bench.generation import cut_at_stop

PROMPTS = ["a", "The quick brown fox jumps over", "1 + 1 =", "Question: what is the answer to this one?\nAnswer:"]


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_batched_generation_matches_one_by_one_in_prompt_order(fixture, request):
    base = request.getfixturevalue(fixture)
    side = base.tokenizer.padding_side
    # random tiny models like to stop at once: ask for real bytes (no pad/EOS) so there is text to compare
    kw = {"max_new_tokens": 12, "min_new_tokens": 12, "suppress_tokens": [0, 1, 2], "progress": False}
    batched = generate(base, PROMPTS, batch_size=4, **kw)
    single = [generate(base, [p], batch_size=1, **kw).texts[0] for p in PROMPTS]
    assert batched.texts == single and batched.gen_tokens == 4 * 12
    assert any(batched.texts) or base.kind == "seq2seq"  # random T5 bytes may all be invalid UTF-8
    assert base.tokenizer.padding_side == side
    assert batched.n == 4 and batched.examples_per_s > 0 and batched.gen_tokens_per_s > 0
    # prompt tokens are the real (unpadded) ones: byte-level tokenizer, one token per byte (+ EOS for T5)
    assert batched.prompt_tokens == sum(len(base.tokenizer(p)["input_ids"]) for p in PROMPTS)
    # a (model, tokenizer, kind) triple works the same
    triple = generate((base.model, base.tokenizer, base.kind), PROMPTS, batch_size=2, **kw)
    assert triple.texts == batched.texts


def test_stop_strings_end_generation_early_and_cut_the_text(tiny_llama):
    free = generate(tiny_llama, PROMPTS, max_new_tokens=24, progress=False)
    text = max(free.texts, key=len)
    assert len(text) > 8
    stop = text[4:6]
    stopped = generate(tiny_llama, PROMPTS, max_new_tokens=24, stop=[stop], progress=False)
    i = PROMPTS.index(PROMPTS[free.texts.index(text)])
    assert stopped.texts[i] == cut_at_stop(text, [stop]) and stop not in stopped.texts[i]
    assert stopped.gen_tokens < free.gen_tokens


def test_cut_at_stop():
    assert cut_at_stop("\n (B)\nbecause", ["\n"]) == "(B)"
    assert cut_at_stop("x = 1\n```\nmore", ["```", "Question:"]) == "x = 1\n"
    assert cut_at_stop("no stop here", ["\n\n"]) == "no stop here"


def test_bad_generation_arguments(tiny_llama):
    assert generate(tiny_llama, [], progress=False).texts == []
    with pytest.raises(ValueError, match="batch_size"):
        generate(tiny_llama, ["a"], batch_size=0)
    with pytest.raises(ValueError, match="kind"):
        generate((tiny_llama.model, tiny_llama.tokenizer, "decoder"), ["a"])


@pytest.mark.parametrize("stop", [[], ["\n"], ["a", "e"], ["Q"]])
def test_dropping_finished_rows_gives_the_tokens_of_hf_generate(tiny_llama, stop):
    """bench/decode.py drops rows at EOS or a stop string; HF's generate pads them: same texts, same counts."""
    prompts = PROMPTS + ["Q: 12+30\nA:", "hello", "The quick brown fox jumps over the lazy dog. " * 3]
    kw = {"max_new_tokens": 20, "stop": stop, "batch_size": 3, "progress": False}
    dropped = generate(tiny_llama, prompts, **kw)
    hf = generate(tiny_llama, prompts, drop_finished=False, **kw)
    assert dropped.texts == hf.texts and dropped.gen_tokens == hf.gen_tokens
    assert len({len(t) for t in hf.texts}) > 1  # rows really finish at different steps


def test_a_generation_config_with_logits_processors_keeps_hf_generate(tiny_llama):
    from lorasoup_core.bench.decode import supports_row_dropping

    model = tiny_llama.model
    assert supports_row_dropping(model)
    before = generate(tiny_llama, PROMPTS, 12, progress=False).texts
    model.generation_config.repetition_penalty = 5.0
    try:
        assert not supports_row_dropping(model)
        penalised = generate(tiny_llama, PROMPTS, 12, progress=False)
        assert penalised.texts == generate(tiny_llama, PROMPTS, 12, drop_finished=False, progress=False).texts
        assert penalised.texts != before
    finally:
        model.generation_config.repetition_penalty = 1.0
    assert supports_row_dropping(model)
