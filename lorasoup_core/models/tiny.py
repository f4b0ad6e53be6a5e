"""Random-init tiny models for fast tests: seeded, built from a config, no files needed.

They are for tests and benchmarks of the machinery, not defaults for real work.
"""

from __future__ import annotations

import torch

from lorasoup_core.models.base import PRESETS, LoadedModel, finish, params_fingerprint

_SEED = 1234


def _tokenizer():
    from transformers import ByT5Tokenizer

    # Byte-level: no vocabulary file. len(tok) (384) counts the extra ids that vocab_size (256) omits.
    return ByT5Tokenizer()


@PRESETS.register("tiny-llama")
def tiny_llama(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=96, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False,
        # The default 0.02 makes logits so small that a LoRA cannot express a confident answer.
        initializer_range=0.1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = LlamaForCausalLM(config)
    return finish(model, tok, "tiny-llama", params_fingerprint(model), device, dtype)


@PRESETS.register("tiny-t5")
def tiny_t5(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = _tokenizer()
    config = T5Config(
        vocab_size=len(tok), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
        num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = T5ForConditionalGeneration(config)
    return finish(model, tok, "tiny-t5", params_fingerprint(model), device, dtype)
