"""Multiple-choice scoring where a task's answer set is closed (BBH's options, yes/no, True/False, a
skill's small label set): the log-likelihood of each option as the prompt's continuation, the way
lm-evaluation-harness scores `multiple_choice` tasks, with the highest-scoring option as the prediction.

It is a companion to exact match on generated text (reported beside it as `<method>/mc`), never a
replacement: a model can rank the right option first and still generate something else. Each prompt is
encoded once; its key/value cache is then shared by all options, which are scored in one forward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lorasoup_core import interrupt
from lorasoup_core.bench.generation import _unpack, plan_batches
from lorasoup_core.data import Task
from lorasoup_core.models import LoadedModel

MAX_OPTIONS = 26  # more distinct targets than this is an open answer set (words, numbers, lists)


def closed_answer_set(task: Task, max_options: int = MAX_OPTIONS) -> list[str] | None:
    """The task's answer options (its distinct targets over all splits, sorted) when there are 2 to
    ``max_options`` of them, else None (generation only)."""
    targets = {e.target.strip() for split in (task.train, task.validation, task.test) for e in split}
    targets.discard("")
    return sorted(targets) if 2 <= len(targets) <= max_options else None


def continuation_text(prompt: str, option: str) -> str:
    """What follows the prompt when the answer is ``option``: the separator ICL demonstrations use."""
    return ("" if prompt.endswith(("\n", " ")) else " ") + option


def _continuation_ids(tok: Any, prompt: str, context: list[int], option: str) -> list[int]:
    # lm-eval's split: encode context + continuation and take what follows the context's tokens; when the
    # boundary merges into one token, encode the continuation on its own instead.
    text = continuation_text(prompt, option)
    whole = tok(prompt + text, add_special_tokens=True)["input_ids"]
    cont = whole[len(context):] if whole[:len(context)] == context else tok(text, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError(f"option {option!r} encodes to no tokens")
    return cont


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = torch.tensor(list(row), dtype=torch.long), 1
    return ids.to(device), mask.to(device)


def _causal_batch(model: Any, pad_id: int, contexts: list[list[int]], conts: list[list[list[int]]],
                  device: torch.device) -> list[list[float]]:
    n_opt = len(conts[0])
    ctx_ids, ctx_mask = _pad(contexts, pad_id, left=True, device=device)
    positions = (ctx_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ctx_ids, attention_mask=ctx_mask, position_ids=positions, use_cache=True)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts each option's first token
    cache = out.past_key_values
    cache.batch_repeat_interleave(n_opt)
    flat = [c for row in conts for c in row]
    cont_ids, cont_mask = _pad(flat, pad_id, left=False, device=device)
    lengths = ctx_mask.sum(-1).repeat_interleave(n_opt)
    cont_pos = lengths[:, None] + torch.arange(cont_ids.shape[1], device=device)[None]
    mask = torch.cat([ctx_mask.repeat_interleave(n_opt, dim=0), cont_mask], dim=1)
    logits = model(input_ids=cont_ids, attention_mask=mask, position_ids=cont_pos, past_key_values=cache,
                   use_cache=True).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    scores = []
    for r, cont in enumerate(flat):
        total = float(first[r // n_opt, cont[0]])
        total += sum(float(logp[r, t - 1, cont[t]]) for t in range(1, len(cont)))
        scores.append(total)
    return [scores[i * n_opt:(i + 1) * n_opt] for i in range(len(contexts))]


def _seq2seq_batch(model: Any, pad_id: int, contexts: list[list[int]], conts: list[list[list[int]]],
                   device: torch.device) -> list[list[float]]:
    n_opt = len(conts[0])
    enc_ids, enc_mask = _pad(contexts, pad_id, left=False, device=device)
    flat = [c for row in conts for c in row]
    labels, label_mask = _pad(flat, pad_id, left=False, device=device)
    logits = model(input_ids=enc_ids.repeat_interleave(n_opt, dim=0),
                   attention_mask=enc_mask.repeat_interleave(n_opt, dim=0),
                   labels=labels.masked_fill(label_mask == 0, -100)).logits
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None])[..., 0]
    scores = (logp * label_mask).sum(-1).tolist()
    return [scores[i * n_opt:(i + 1) * n_opt] for i in range(len(contexts))]


@torch.inference_mode()
def option_logliks(loaded: LoadedModel | tuple[Any, Any, str], prompts: Sequence[str], options: Sequence[str],
                   model: Any = None, batch_size: int = 8, progress: bool = False,
                   max_batch_tokens: int | None = None) -> list[list[float]]:
    """log P(option | prompt) summed over the option's tokens, for every prompt and option (prompt order).
    A batch holds at most ``batch_size`` prompts, and with ``max_batch_tokens`` at most that many context
    tokens over all its option rows (each option row carries a copy of its prompt's cache)."""
    base_model, tok, kind, device = _unpack(loaded)
    model = model if model is not None else base_model
    if len(options) < 2:
        raise ValueError(f"multiple-choice scoring needs at least 2 options, got {list(options)}")
    contexts = tok(list(prompts), add_special_tokens=True)["input_ids"]
    if kind == "seq2seq":
        conts = [[tok(o, add_special_tokens=True)["input_ids"] for o in options]] * len(prompts)
        batch_fn = _seq2seq_batch
    else:
        conts = [[_continuation_ids(tok, p, c, o) for o in options] for p, c in zip(prompts, contexts, strict=True)]
        batch_fn = _causal_batch
    results: list[list[float]] = [[] for _ in prompts]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    budget = max(1, max_batch_tokens // len(options)) if max_batch_tokens else None
    for idx in tqdm(plan_batches([len(c) for c in contexts], batch_size, budget), desc="options",
                    disable=not progress, leave=False):
        interrupt.check()
        scores = batch_fn(model, pad_id, [contexts[i] for i in idx], [conts[i] for i in idx], device)
        for i, row in zip(idx, scores, strict=True):
            results[i] = row
    return results


def choose(loaded: LoadedModel | tuple[Any, Any, str], prompts: Sequence[str], options: Sequence[str],
           model: Any = None, batch_size: int = 8, max_batch_tokens: int | None = None) -> list[str]:
    """The highest-likelihood option per prompt (ties go to the earlier option)."""
    scores = option_logliks(loaded, prompts, options, model, batch_size, max_batch_tokens=max_batch_tokens)
    return [options[max(range(len(options)), key=row.__getitem__)] for row in scores]
