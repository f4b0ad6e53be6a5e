"""The fitted objective equals HF's own per-example loss for every model family: where the head-only path
would miss a family's logit transform (Gemma2's final soft-capping) or cannot run (BART has no T5
`_shift_right`), the one-time check at start switches to the full forward."""

from __future__ import annotations

import pytest
import torch

from lorasoup_core.compose.objective import FewShot
from lorasoup_core.data import load_task
from lorasoup_core.data.prompts import encode, per_example_loss
from lorasoup_core.models.base import finish


def _tiny(family: str, tokenizer):
    from transformers import BartConfig, BartForConditionalGeneration, Gemma2Config, Gemma2ForCausalLM

    vocab = len(tokenizer)
    torch.manual_seed(0)
    if family == "gemma2":
        cfg = Gemma2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=3.0,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=None, initializer_range=0.5)
        model = Gemma2ForCausalLM(cfg)
    else:
        cfg = BartConfig(vocab_size=vocab, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                         decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         decoder_start_token_id=tokenizer.eos_token_id, bos_token_id=None)
        model = BartForConditionalGeneration(cfg)
    return finish(model, tokenizer, f"tiny-{family}", family, torch.device("cpu"), torch.float32)


def _hf_per_example(base, task, shots) -> torch.Tensor:
    batch = encode(base.kind, base.tokenizer, [task.prompt(s) for s in shots], [s.target for s in shots], 256)
    with torch.no_grad():
        logits = base.model(**batch).logits
    return per_example_loss(logits, batch["labels"], base.kind)


@pytest.mark.parametrize("model, path", [("gemma2", "full"), ("bart", "full"), ("tiny_llama", "head"),
                                         ("tiny_t5", "head")])
def test_objective_equals_hf_loss_whichever_path(request, tiny_llama, model, path):
    """Gemma2 (logit soft-capping) and BART (no `_shift_right`) go through the full forward; the families
    the head-only path reproduces keep it."""
    base = _tiny(model, tiny_llama.tokenizer) if path == "full" else request.getfixturevalue(model)
    task = load_task({"source": "skills", "name": "add", "n_train": 10, "n_validation": 0, "n_test": 0})
    fewshot = FewShot(base, task, task.train[:4])
    assert fewshot.path == path, fewshot.path_reason
    with torch.no_grad():
        torch.testing.assert_close(fewshot.per_example(1)[0], _hf_per_example(base, task, task.train[:4]),
                                   rtol=1e-5, atol=1e-5)


def test_long_prompts_lose_their_start_and_are_counted(tiny_t5, tiny_llama, caplog):
    """The end of a prompt (BBH's question and options) survives the cut, for both model kinds."""
    prompt = "x" * 300 + " QUESTION?"
    with caplog.at_level("WARNING", logger="lorasoup.data"):
        for base in (tiny_t5, tiny_llama):
            batch = encode(base.kind, base.tokenizer, [prompt, "short"], ["A", "B"], 64)
            ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
            text = base.tokenizer.decode(ids, skip_special_tokens=True)
            assert "QUESTION?" in text and len(ids) <= 64
    assert [r.getMessage() for r in caplog.records].count(
        "1 of 2 prompts were longer than 64 tokens and lost their start") == 2
