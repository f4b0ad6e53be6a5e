"""embed_texts / task_embedding: shapes, padding invariance, normalisation, task separation."""

from __future__ import annotations

import numpy as np
import pytest

from lorasoup_core.adapters import embed_texts, task_embedding


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_embed_texts_ignores_padding(request, fixture):
    base = request.getfixturevalue(fixture)
    texts = ["hi", "a much longer sentence that forces padding on the short one", "mid length"]
    together = embed_texts(base, texts, batch_size=3)
    alone = np.concatenate([embed_texts(base, [t]) for t in texts])
    hidden = base.model.config.hidden_size if base.kind == "causal" else base.model.config.d_model
    assert together.shape == (3, hidden) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert not np.allclose(together[0], together[1])
    assert base.tokenizer.padding_side == "right"


def test_task_embedding_is_normalised_seeded_and_separates_tasks(tiny_llama, first_letter_task, make_word_task):
    digits = make_word_task("digits", lambda w: w, template="{input} + 1 =", words=[str(i * 37) for i in range(40)])
    a = np.array(task_embedding(tiny_llama, first_letter_task, n=8, seed=0))
    b = np.array(task_embedding(tiny_llama, digits, n=8, seed=0))
    assert abs(np.linalg.norm(a) - 1) < 1e-5 and abs(np.linalg.norm(b) - 1) < 1e-5
    assert np.array_equal(a, task_embedding(tiny_llama, first_letter_task, n=8, seed=0))
    assert not np.allclose(a, task_embedding(tiny_llama, first_letter_task, n=8, seed=1))  # another sample
    same_task_other_sample = np.array(task_embedding(tiny_llama, first_letter_task, n=8, seed=1))
    assert float(a @ b) < float(a @ same_task_other_sample)  # closer to itself than to another task


def test_empty_inputs_are_errors(tiny_llama, make_word_task):
    with pytest.raises(ValueError, match="at least one"):
        embed_texts(tiny_llama, [])
    with pytest.raises(ValueError, match="'empty'"):
        task_embedding(tiny_llama, make_word_task("empty", str, words=[]))
