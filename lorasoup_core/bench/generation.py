"""Batched greedy generation: left padding (causal) or encoder batching (seq2seq), length-bucketed batches
sized by a token budget (prompts sorted by token length, results back in the prompts' order), a shared
prompt prefix encoded once (bench/prefix.py), stop strings (generation stops early and the text is cut
before them), a progress bar with examples/s, and the throughput numbers a run reports."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from lorasoup_core import interrupt
from lorasoup_core.bench.decode import greedy_decode, supports_row_dropping
from lorasoup_core.bench.prefix import PrefixCache, common_prefix_length, encode_prefix, prefixed_batch
from lorasoup_core.models import LoadedModel


@dataclass
class GenerationResult:
    """Texts in the prompts' order, and throughput: examples/s, generated tokens/s (up to the stop
    string or EOS), prompt tokens per example (what ICL costs over zero-shot)."""

    texts: list[str]
    examples_per_s: float
    gen_tokens_per_s: float
    prompt_tokens_per_example: float
    n: int = 0
    seconds: float = 0.0
    gen_tokens: int = 0
    prompt_tokens: int = 0
    prefix_tokens: int = 0  # tokens of the shared prefix encoded once (0: no prefix cache)

    @staticmethod
    def combine(results: Sequence[GenerationResult]) -> dict[str, float]:
        """Throughput over several runs (totals, not a mean of rates)."""
        n = sum(r.n for r in results)
        seconds = max(sum(r.seconds for r in results), 1e-9)
        return {"examples_per_s": n / seconds, "gen_tokens_per_s": sum(r.gen_tokens for r in results) / seconds,
                "prompt_tokens_per_example": sum(r.prompt_tokens for r in results) / max(n, 1),
                "examples": float(n), "seconds": seconds}


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string. Leading whitespace is dropped first: a newline before any
    content does not end an answer ("Answer:\n(B)\n" gives "(B)")."""
    text = text.lstrip()
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class StopOnStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains a stop string (per row, so finished rows
    only get padding while the rest of the batch goes on). Only the tail of the generated tokens is
    decoded each step: enough tokens to hold the longest stop string."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_len: int) -> None:
        self.tokenizer, self.stop, self.prompt_len = tokenizer, [s for s in stop if s], prompt_len
        longest = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in self.stop)
        self.window = 2 * longest + 4  # tokenisation in context can split a stop string differently

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **_: Any) -> torch.BoolTensor:
        tail = input_ids[:, self.prompt_len:][:, -self.window:]
        texts = self.tokenizer.batch_decode(tail, skip_special_tokens=True)
        return torch.tensor([any(s in t.lstrip() for s in self.stop) for t in texts], dtype=torch.bool,
                            device=input_ids.device)

    def hit(self, generated: list[int]) -> bool:
        """The same test on one row's generated tokens (for decode.greedy_decode)."""
        text = self.tokenizer.decode(generated[-self.window:], skip_special_tokens=True)
        return any(s in text.lstrip() for s in self.stop)


def _unpack(loaded: LoadedModel | tuple[Any, Any, str]) -> tuple[Any, Any, str, torch.device]:
    if isinstance(loaded, LoadedModel):
        return loaded.model, loaded.tokenizer, loaded.kind, loaded.device
    model, tokenizer, kind = loaded
    if kind not in ("causal", "seq2seq"):
        raise ValueError(f"model kind must be 'causal' or 'seq2seq', got {kind!r}")
    return model, tokenizer, kind, next(model.parameters()).device


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None,
                 extra_tokens: int = 0) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first: at most ``batch_size`` rows, and at
    most ``max_batch_tokens`` padded tokens (rows × (longest row + ``extra_tokens``)) when given; a row
    longer than the budget gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            width = lengths[batch[0]] + extra_tokens  # the batch's first row is its longest
            if len(batch) < batch_size and (max_batch_tokens is None or (len(batch) + 1) * width <= max_batch_tokens):
                batch.append(i)
                continue
        batches.append([i])
    return batches


@torch.inference_mode()
def generate(loaded: LoadedModel | tuple[Any, Any, str], prompts: Sequence[str], max_new_tokens: int = 16,
             stop: Sequence[str] | None = None, batch_size: int = 16, model: Any = None,
             progress: bool = True, *, prefix_cache: bool = True, max_batch_tokens: int | None = None,
             drop_finished: bool = True, **generate_kwargs: Any) -> GenerationResult:
    """Greedy continuations of ``prompts`` (returned in their order), cut before the first stop string.

    ``loaded`` is a LoadedModel or (model, tokenizer, kind); ``model`` overrides its model (e.g. the
    base with a PEFT adapter). Prompts are batched longest first so a batch holds similar lengths; with
    ``max_batch_tokens`` a batch also holds at most that many padded prompt + new tokens. With
    ``prefix_cache`` (causal models) the prompts' common token prefix is encoded once and its key/value
    cache reused by every batch. With ``drop_finished`` (causal models) a row leaves its batch once it is
    finished (bench/decode.py) instead of riding along on padding. Extra keyword arguments go to HF's
    ``model.generate`` (e.g. min_new_tokens), which then does the decoding.
    """
    base_model, tok, kind, device = _unpack(loaded)
    model = model if model is not None else base_model
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1 (got {batch_size}, {max_new_tokens})")
    stop = [s for s in (stop or []) if s]
    if not prompts:
        return GenerationResult([], 0.0, 0.0, 0.0)
    t0 = time.perf_counter()
    ids = tok(list(prompts), add_special_tokens=True)["input_ids"]
    prefix: PrefixCache | None = None
    if prefix_cache and kind == "causal":
        prefix = encode_prefix(model, ids[0][:common_prefix_length(ids)], device)
    cut = len(prefix) if prefix else 0
    # finished rows leave the batch (decode.py) unless HF's generate must run: extra arguments, seq2seq,
    # or a generation config with logits processors
    dropping = drop_finished and kind == "causal" and not generate_kwargs and supports_row_dropping(model)
    batches = plan_batches([len(row) - cut for row in ids], batch_size, max_batch_tokens, max_new_tokens)
    texts: list[str] = [""] * len(prompts)
    side = tok.padding_side
    tok.padding_side = "left" if kind == "causal" else "right"  # causal continues from the last position
    special = {tok.pad_token_id, tok.eos_token_id}
    prompt_tokens = gen_tokens = 0
    bar = tqdm(total=len(prompts), desc="generate", unit="ex", disable=not progress, leave=False)
    try:
        for idx in batches:
            interrupt.check()
            enc = tok.pad({"input_ids": [ids[i][cut:] for i in idx]}, return_tensors="pt").to(device)
            prompt_tokens += int(enc["attention_mask"].sum()) + cut * len(idx)
            inputs = prefixed_batch(prefix, enc) if prefix else dict(enc)
            width = inputs["input_ids"].shape[1] if kind == "causal" else 0
            stopper = StopOnStrings(tok, stop, width) if stop else None
            if dropping:
                rows = greedy_decode(model, inputs["input_ids"], inputs["attention_mask"], max_new_tokens,
                                     [tok.eos_token_id], stopper.hit if stopper else None,
                                     inputs.get("past_key_values"))
            else:
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     use_cache=True, stopping_criteria=StoppingCriteriaList([stopper] if stopper else []),
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **generate_kwargs)
                rows = out[:, width:].tolist()
            for row, i in zip(rows, idx, strict=True):
                new = [t for t in row if t not in special]
                text = tok.decode(new, skip_special_tokens=True)
                texts[i] = cut_at_stop(text, stop)
                gen_tokens += len(new)
            bar.update(len(idx))
            bar.set_postfix(ex_per_s=f"{bar.n / (time.perf_counter() - t0):.2f}")
    finally:
        tok.padding_side = side
        bar.close()
    seconds = max(time.perf_counter() - t0, 1e-9)
    n = len(prompts)
    return GenerationResult(texts, n / seconds, gen_tokens / seconds, prompt_tokens / max(n, 1), n, seconds,
                            gen_tokens, prompt_tokens, cut)
