"""Prompt formatting and tokenisation for causal and seq2seq models.

Causal: ``prompt + " " + target + eos``; labels are -100 on the prompt and padding, so the loss
falls on target tokens only. Seq2seq: the prompt feeds the encoder, the target is the label.

A prompt over `max_length` tokens loses its start, never its end (where BBH puts the question and
the options), and every cut is counted in the `lorasoup.data` log.

Text is cut to `max_length * CHARS_PER_TOKEN` characters *before* tokenising (a prompt keeps its end,
a target its start): a 50 MB row costs tens of kilobytes of tokenising, not gigabytes of token ids.
CHARS_PER_TOKEN is above the longest token of the tokenizers in use (byte-level: 1 byte; SmolLM2's
longest is 81 characters, a newline and 80 spaces), so a cut text still has more than `max_length`
tokens and the token-level cut below is the one that decides what the model sees.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

IGNORE = -100
CHARS_PER_TOKEN = 128  # a bound on characters per token (see the module docstring)
log = logging.getLogger("lorasoup.data")


def char_cap(max_length: int) -> int:
    """Characters of one text worth tokenising when at most `max_length` tokens are kept."""
    return max_length * CHARS_PER_TOKEN


def keep_end(texts: Sequence[str], max_length: int) -> list[str]:
    """Each text cut to its last `char_cap(max_length)` characters (prompts lose their start)."""
    cap = char_cap(max_length)
    return [t if len(t) <= cap else t[-cap:] for t in texts]


def keep_start(texts: Sequence[str], max_length: int) -> list[str]:
    """Each text cut to its first `char_cap(max_length)` characters (targets lose their end)."""
    cap = char_cap(max_length)
    return [t if len(t) <= cap else t[:cap] for t in texts]


def _report_cuts(cut: int, total: int, max_length: int) -> None:
    if cut:
        log.warning("%d of %d prompts were longer than %d tokens and lost their start", cut, total, max_length)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_causal(tokenizer: Any, prompts: Sequence[str], targets: Sequence[str], max_length: int = 256,
                  ) -> dict[str, torch.Tensor]:
    """Right-padded batch with labels on the target tokens (+ EOS). Over-long prompts lose their start,
    never their target."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    rows = []
    cut = 0
    for prompt, target in zip(keep_end(prompts, max_length), keep_start(targets, max_length), strict=True):
        p = _ids(tokenizer, prompt)
        t = _ids(tokenizer, " " + target) + eos
        t = t[:max_length]
        if len(p) + len(t) > max_length:
            cut += 1
            p = p[len(p) - (max_length - len(t)):] if max_length > len(t) else []
        rows.append((p + t, [IGNORE] * len(p) + t))
    _report_cuts(cut, len(rows), max_length)
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def encode_seq2seq(tokenizer: Any, prompts: Sequence[str], targets: Sequence[str], max_length: int = 256,
                   ) -> dict[str, torch.Tensor]:
    prompts, targets = keep_end(prompts, max_length), keep_start(targets, max_length)
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # keep the end of the prompt: the question and its options
    try:
        enc = tokenizer(list(prompts), max_length=max_length, truncation=True, padding=True, return_tensors="pt")
    finally:
        tokenizer.truncation_side = side
    full = tokenizer(list(prompts), truncation=False)["input_ids"]
    _report_cuts(sum(len(ids) > max_length for ids in full), len(full), max_length)
    lab = tokenizer(list(targets), max_length=max_length, truncation=True, padding=True, return_tensors="pt")
    labels = lab["input_ids"].masked_fill(lab["attention_mask"] == 0, IGNORE)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def encode(kind: str, tokenizer: Any, prompts: Sequence[str], targets: Sequence[str], max_length: int = 256,
           ) -> dict[str, torch.Tensor]:
    """Tokenise (prompt, target) pairs for a model of ``kind`` ('causal' or 'seq2seq')."""
    if kind == "causal":
        return encode_causal(tokenizer, prompts, targets, max_length)
    if kind == "seq2seq":
        return encode_seq2seq(tokenizer, prompts, targets, max_length)
    raise ValueError(f"unknown model kind {kind!r}; known: causal, seq2seq")


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean token cross-entropy per example (independent of batch size and padding)."""
    if kind == "causal":
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    tok = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), labels.clamp_min(0).reshape(-1), reduction="none"
    ).view(labels.shape)
    return (tok * mask).sum(1) / mask.sum(1).clamp_min(1)
