"""A huge row is cut to a character bound before it is tokenised (training, validation, embedding):
a 50 MB line used to be tokenised whole (2.36 GB) only to keep its last `max_length` tokens."""

import dataclasses

import pytest

from lorasoup_core.adapters import TrainingConfig, train_lora
from lorasoup_core.data import Example, Task
from lorasoup_core.data.prompts import encode

HUGE = 3_000_000  # characters: old code tokenised all of them (seconds and hundreds of MB with a byte tokenizer)
LIMIT = 100_000  # the spy's limit: far above the bound (max_length * 128 characters), far below HUGE


class SpyTokenizer:
    """Forwards to a tokenizer and fails on any text longer than `limit` characters."""

    def __init__(self, tok, limit):
        object.__setattr__(self, "_tok", tok)
        object.__setattr__(self, "_limit", limit)
        object.__setattr__(self, "longest", 0)

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __setattr__(self, name, value):
        setattr(self._tok, name, value)

    def __call__(self, text, *args, **kwargs):
        texts = [text] if isinstance(text, str) else list(text)
        longest = max(map(len, texts), default=0)
        object.__setattr__(self, "longest", max(self.longest, longest))
        if longest > self._limit:
            raise AssertionError(f"tokenised a text of {longest} characters (limit {self._limit})")
        return self._tok(text, *args, **kwargs)


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_t5"])
def test_encode_cuts_text_before_tokenising_and_keeps_what_the_model_sees(request, model):
    base = request.getfixturevalue(model)
    max_length = 32
    spy = SpyTokenizer(base.tokenizer, LIMIT)
    tail = "Which colour is the sky?\nAnswer:"
    prompts = ["x" * HUGE + tail, "short one\nAnswer:"]
    targets = ["blue", "y" * HUGE]
    got = encode(base.kind, spy, prompts, targets, max_length)
    from lorasoup_core.data.prompts import char_cap

    cap = char_cap(max_length)
    assert 0 < spy.longest <= cap + 1  # causal targets get a leading space
    # the same tensors as from text already cut to the bound: the prompt keeps its end, the target its start
    want = encode(base.kind, base.tokenizer, ["x" * (cap - len(tail)) + tail, prompts[1]], ["blue", "y" * cap],
                  max_length)
    assert all(got[k].equal(want[k]) for k in want)


def test_training_with_a_huge_row_never_tokenises_it_whole(tiny_llama, tmp_path):
    cfg = TrainingConfig(steps=2, batch_size=2, max_length=32, max_validation=2)
    spy_base = dataclasses.replace(tiny_llama, tokenizer=SpyTokenizer(tiny_llama.tokenizer, LIMIT))
    rows = [Example("word: " + "z" * HUGE, "z"), Example("word: apple", "a"), Example("word: river", "r")]
    task = Task("huge", train=rows, validation=rows[:2], test=[])
    card = train_lora(spy_base, task, cfg, tmp_path / "out", progress=False, embed_examples=3)
    assert card.metrics["steps"] == 2 and len(card.embedding) == 96
    assert spy_base.tokenizer.longest <= 256 * 128 + 1  # the embedding's max_length is 256

