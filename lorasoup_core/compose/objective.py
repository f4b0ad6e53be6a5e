"""The few-shot objective: mean over examples of the mean target-token cross-entropy.

Examples are tokenised once (and repeated once per population size). The language-model head runs
only at the positions that predict target tokens: few-shot prompts are long and answers short, and
the head is a large share of a small model's forward (~1/5 on SmolLM2). The loss of an example does
not depend on the batch it is in, so `batch_size` only bounds memory.
"""

from __future__ import annotations

import torch

from lorasoup_core.data import Example, Task
from lorasoup_core.data.prompts import IGNORE, encode
from lorasoup_core.models import LoadedModel


class FewShot:
    def __init__(self, base: LoadedModel, task: Task, shots: list[Example], max_length: int = 256,
                 batch_size: int | None = None) -> None:
        if not shots:
            raise ValueError(f"task {task.name!r}: no few-shot examples to fit on")
        self.base, self.n = base, len(shots)
        with torch.inference_mode(False):  # normal tensors, usable by CAT's autograd later
            enc = encode(base.kind, base.tokenizer, [task.prompt(e) for e in shots], [e.target for e in shots],
                         max_length)
            self.batch = {k: v.to(base.device) for k, v in enc.items()}
        size = batch_size or self.n
        self.chunks = [slice(i, i + size) for i in range(0, self.n, size)]
        self._repeated: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    @property
    def tokens_per_composition(self) -> int:
        """Tokens (padding included) a composition's layers see per forward: picks the engine's mode."""
        b = self.batch
        width = b["input_ids"].shape[1] if self.base.kind == "causal" else \
            b["input_ids"].shape[1] + b["labels"].shape[1]
        return (self.chunks[0].stop - self.chunks[0].start) * width

    def _chunk(self, j: int, population: int) -> dict[str, torch.Tensor]:
        key = (j, population)
        if key not in self._repeated:
            with torch.inference_mode(False):
                self._repeated[key] = self._build_chunk(j, population)
        return self._repeated[key]

    def _build_chunk(self, j: int, population: int) -> dict[str, torch.Tensor]:
        part = {k: v[self.chunks[j]] for k, v in self.batch.items()}
        rep = {k: v.repeat(population, *[1] * (v.dim() - 1)) for k, v in part.items()}
        labels = rep["labels"][:, 1:] if self.base.kind == "causal" else rep["labels"]
        mask = labels != IGNORE
        rep["mask"], rep["targets"] = mask, labels[mask]
        rep["row"] = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[mask]
        rep["counts"] = mask.sum(1).clamp_min(1)
        return rep

    def _hidden(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states at the target-predicting positions, ready for the LM head."""
        model = self.base.model
        if self.base.kind == "causal":
            hidden = model.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            return hidden[:, :-1][b["mask"]]
        enc = model.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        dec_in = model._shift_right(b["labels"])
        hidden = model.get_decoder()(input_ids=dec_in, encoder_hidden_states=enc,
                                     encoder_attention_mask=b["attention_mask"]).last_hidden_state[b["mask"]]
        cfg = model.config
        if cfg.model_type in ("t5", "mt5") and getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings):
            hidden = hidden * cfg.d_model ** -0.5  # T5 rescales before a tied head
        return hidden

    def per_example(self, population: int = 1) -> torch.Tensor:
        """[population, n_shots] losses; row p under the engine's composition p."""
        head = self.base.model.get_output_embeddings()
        out = []
        for j in range(len(self.chunks)):
            b = self._chunk(j, population)
            logits = head(self._hidden(b)).float()
            tok = torch.nn.functional.cross_entropy(logits, b["targets"], reduction="none")
            sums = torch.zeros(b["mask"].shape[0], device=tok.device, dtype=tok.dtype).index_add_(0, b["row"], tok)
            out.append((sums / b["counts"]).view(population, -1))
        return torch.cat(out, 1)

    def losses(self, population: int = 1) -> torch.Tensor:
        """[population] mean per-example losses."""
        return self.per_example(population).mean(1)

    def loss(self) -> torch.Tensor:
        return self.losses(1)[0]
