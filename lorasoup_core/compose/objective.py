"""The few-shot objective: mean over examples of the mean target-token cross-entropy.

Examples are tokenised once. For causal models the language-model head runs only at the positions
that predict target tokens (few-shot prompts are long and answers short, and the head is a large
share of a small model's forward).
"""

from __future__ import annotations

import torch

from lorasoup_core.data import Example, Task
from lorasoup_core.data.prompts import IGNORE, encode, per_example_loss
from lorasoup_core.models import LoadedModel


class FewShot:
    def __init__(self, base: LoadedModel, task: Task, shots: list[Example], max_length: int = 256) -> None:
        if not shots:
            raise ValueError(f"task {task.name!r}: no few-shot examples to fit on")
        self.base = base
        enc = encode(base.kind, base.tokenizer, [task.prompt(e) for e in shots], [e.target for e in shots], max_length)
        self.batch = {k: v.to(base.device) for k, v in enc.items()}
        if base.kind == "causal":
            labels = self.batch["labels"][:, 1:]
            self.mask = labels != IGNORE
            self.targets = labels[self.mask]
            self.row = torch.arange(labels.shape[0], device=base.device)[:, None].expand_as(labels)[self.mask]
            self.counts = self.mask.sum(1).clamp_min(1)

    def per_example(self) -> torch.Tensor:
        """[n_shots] losses under whatever composition the model is patched with."""
        model, b = self.base.model, self.batch
        if self.base.kind == "seq2seq":
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
            return per_example_loss(out.logits, b["labels"], "seq2seq")
        hidden = model.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, :-1][self.mask]).float()
        tok = torch.nn.functional.cross_entropy(logits, self.targets, reduction="none")
        sums = torch.zeros(self.mask.shape[0], device=tok.device).index_add_(0, self.row, tok)
        return sums / self.counts

    def loss(self) -> torch.Tensor:
        return self.per_example().mean()
