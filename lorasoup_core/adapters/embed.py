"""Task embeddings: mean-pooled base-model hidden states of a task's prompts, for candidate retrieval."""

from __future__ import annotations

import random

import numpy as np
import torch

from lorasoup_core.data import Task
from lorasoup_core.models import LoadedModel


@torch.inference_mode()
def embed_texts(base: LoadedModel, texts: list[str], batch_size: int = 16, max_length: int = 256) -> np.ndarray:
    """[len(texts), hidden] float32: mean of the last hidden states over real (non-pad) tokens; the
    encoder's states for seq2seq models, the decoder stack's (before the LM head) for causal ones."""
    if not texts:
        raise ValueError("embed_texts needs at least one text")
    from lorasoup_core.data.prompts import keep_start

    texts = keep_start(texts, max_length)  # only the first max_length tokens are embedded: tokenise no more
    model, tok = base.model, base.tokenizer
    body = model.get_encoder() if base.kind == "seq2seq" else model.get_decoder()
    side = tok.padding_side
    tok.padding_side = "right"  # positions count from the first token, and special tokens as in encode()
    out = []
    try:
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i: i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                      max_length=max_length, add_special_tokens=base.kind == "seq2seq").to(base.device)
            hidden = body(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).float().cpu())
    finally:
        tok.padding_side = side
    return torch.cat(out).numpy()


def centroid(vectors: np.ndarray) -> list[float]:
    """L2-normalised mean of row vectors."""
    c = vectors.mean(0)
    return (c / (np.linalg.norm(c) + 1e-12)).tolist()


def task_embedding(base: LoadedModel, task: Task, n: int = 64, seed: int = 0) -> list[float]:
    """L2-normalised centroid of the embeddings of up to `n` training prompts (a seeded choice; the test
    split stands in for tasks without training data)."""
    pool = task.train or task.test
    if not pool:
        raise ValueError(f"task {task.name!r} has no train or test examples to embed")
    examples = pool if len(pool) <= n else random.Random(seed).sample(pool, n)
    return centroid(embed_texts(base, [task.prompt(e) for e in examples]))
