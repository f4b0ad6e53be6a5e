"""Batched greedy generation: left padding (causal) or encoder batching (seq2seq), prompts sorted by
length, stop strings, a progress bar with examples/s, and throughput numbers."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lorasoup_core.models import LoadedModel


@dataclass
class GenerationResult:
    texts: list[str]
    examples_per_s: float
    gen_tokens_per_s: float
    prompt_tokens_per_example: float


def cut_at_stop(text: str, stop: list[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


@torch.inference_mode()
def generate(base: LoadedModel, prompts: list[str], max_new_tokens: int = 16, stop: list[str] | None = None,
             batch_size: int = 16, model=None, progress: bool = True) -> GenerationResult:
    """Greedy continuations of `prompts` (in their order). `model` overrides base.model (e.g. a PEFT model)."""
    model = model or base.model
    tok = base.tokenizer
    stop = stop or []
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    side = tok.padding_side
    tok.padding_side = "left" if base.kind == "causal" else "right"
    prompt_tokens = gen_tokens = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(prompts), desc="generate", unit="ex", disable=not progress, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(base.device)
            prompt_tokens += int(enc["attention_mask"].sum())
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:] if base.kind == "causal" else out
            for row, i in zip(new, idx, strict=True):
                ids = [t for t in row.tolist() if t not in (tok.pad_token_id, tok.eos_token_id)]
                gen_tokens += len(ids)
                texts[i] = cut_at_stop(tok.decode(ids, skip_special_tokens=True), stop)
            bar.update(len(idx))
            bar.set_postfix(ex_per_s=f"{bar.n / (time.perf_counter() - t0):.1f}")
    finally:
        tok.padding_side = side
        bar.close()
    seconds = max(time.perf_counter() - t0, 1e-9)
    return GenerationResult(texts, len(prompts) / seconds, gen_tokens / seconds, prompt_tokens / max(len(prompts), 1))
