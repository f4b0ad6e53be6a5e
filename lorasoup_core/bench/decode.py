"""Greedy decoding for causal models that drops a row from the batch as soon as it is finished (EOS or a
stop string), together with its rows of the key/value cache.

HF's ``generate`` keeps finished rows in the batch, feeding them padding until the longest answer ends;
in evaluation most rows stop after a few tokens while one runs on, so most of each decode step is spent on
finished rows. The tokens are the same: each step is the argmax of the same logits (no logits processors:
models whose generation config asks for any, and calls with extra generate arguments, use ``generate``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

# generation_config fields that do not change greedy decoding (the rest would need HF's processors)
_NEUTRAL = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "use_cache", "do_sample",
            "temperature", "top_p", "top_k", "min_p", "typical_p", "max_length", "max_new_tokens",
            "output_attentions", "output_hidden_states", "output_scores", "output_logits",
            "return_dict_in_generate", "transformers_version", "num_beams", "num_return_sequences",
            "cache_implementation", "_from_model_config"}
# processor settings at the value that turns them off
_NO_EFFECT = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "length_penalty": 1.0,
              "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0,
              "num_beam_groups": 1, "diversity_penalty": 0.0}


def supports_row_dropping(model: Any) -> bool:
    """A causal model whose generation config holds nothing beyond token ids and sampling settings
    (which greedy decoding ignores), and whose cache can drop rows."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    generation = getattr(model, "generation_config", None)
    diff = generation.to_diff_dict() if generation is not None else {}
    if (diff.get("num_beams") or 1) > 1:
        return False
    return all(key in _NEUTRAL or value is None or _NO_EFFECT.get(key) == value for key, value in diff.items())


@torch.inference_mode()
def greedy_decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                  eos_ids: Sequence[int], finished: Callable[[list[int]], bool] | None = None,
                  past_key_values: Any = None) -> list[list[int]]:
    """The greedy continuation of each row (left-padded ``input_ids``), without its EOS token.

    ``finished(tokens)`` says whether a row's generated tokens so far end it (a stop string). With a
    ``past_key_values`` cache, its tokens are the first positions of ``input_ids`` and are not fed again.
    """
    from transformers import DynamicCache

    cache = past_key_values if past_key_values is not None else DynamicCache()
    past = cache.get_seq_length()
    mask = attention_mask
    ids = input_ids[:, past:]
    positions = ((mask.cumsum(-1) - 1).clamp(min=0))[:, past:]
    eos = torch.tensor(sorted(set(eos_ids)), device=input_ids.device)
    active = list(range(input_ids.shape[0]))
    out: list[list[int]] = [[] for _ in active]
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
        tokens = logits.argmax(-1)
        done = torch.isin(tokens, eos).tolist()
        keep = []
        for j, (row, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
            if done[j]:
                continue
            out[row].append(token)
            if finished is None or not finished(out[row]):
                keep.append(j)
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=input_ids.device)
            cache.batch_select_indices(index)
            mask, tokens = mask[index], tokens[index]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        positions = mask.sum(-1, keepdim=True) - 1
        ids = tokens[:, None]
    return out
