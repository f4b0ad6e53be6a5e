"""The few-shot objective a composition is fitted on.

Two loss scales: `lorahub`, the original code's (per batch, HF's token-mean cross-entropy over the
batch's target tokens; summed over batches and divided by the number of examples: with the 5 shots in
one batch that is CE/5), and `per_example` (the mean over examples of each example's token-mean
cross-entropy: independent of batch size and of how many target tokens each example has).

Examples are tokenised once (and repeated once per population size). By default the language-model
head runs only at the positions that predict target tokens (few-shot prompts are long and answers
short; the head is ~1/5 of a small model's forward). Some families transform their logits or decoder
outputs in ways that path would miss (final logit soft-capping, decoder-output rescaling, BART's
own label shift), so at start the head-only losses are checked once against the full HF forward on
the shots; when they differ, the full forward is used instead (`path` says which).
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from lorasoup_core.data import Example, Task
from lorasoup_core.data.prompts import IGNORE, encode
from lorasoup_core.models import LoadedModel

log = logging.getLogger(__name__)
LossScale = Literal["lorahub", "per_example"]


class FewShot:
    def __init__(self, base: LoadedModel, task: Task, shots: list[Example], max_length: int = 256,
                 batch_size: int | None = None, check: bool = True) -> None:
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
        self.path, self.path_reason = "head", "not checked"
        if check:
            self._choose_path()

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

    def _head_logits(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits at the target-predicting positions from the final hidden states (LM head only there)."""
        model = self.base.model
        if self.base.kind == "causal":
            hidden = model.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            hidden = hidden[:, :-1][b["mask"]]
        else:
            enc = model.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            dec_in = model._shift_right(b["labels"])
            hidden = model.get_decoder()(input_ids=dec_in, encoder_hidden_states=enc,
                                         encoder_attention_mask=b["attention_mask"]).last_hidden_state[b["mask"]]
            cfg = model.config
            scale = {"t5": getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings),
                     "umt5": cfg.tie_word_embeddings}.get(cfg.model_type, False)
            if scale:  # as HF's T5 / umT5 do before the head (mT5 does not); the check at start verifies it
                hidden = hidden * cfg.d_model ** -0.5
        return model.get_output_embeddings()(hidden)

    def _full_logits(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits at the target-predicting positions from the model's own full forward."""
        inputs = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
        if self.base.kind == "causal":
            return self.base.model(**inputs).logits[:, :-1][b["mask"]]
        return self.base.model(**inputs, labels=b["labels"]).logits[b["mask"]]

    def _choose_path(self) -> None:
        """Head-only when it reproduces the full forward's per-example losses on the shots, else full."""
        with torch.inference_mode():
            counts = self._chunk_counts()
            full = self._sums(1, "full")[0] / counts
            try:
                head = self._sums(1, "head")[0] / counts
            except Exception as err:  # e.g. a seq2seq family without T5's _shift_right
                self.path, self.path_reason = "full", f"head-only forward failed: {type(err).__name__}: {err}"
            else:
                tol = 1e-4 if self.base.dtype == torch.float32 else 2e-2
                if torch.allclose(head, full, rtol=tol, atol=tol):
                    self.path, self.path_reason = "head", "head-only losses equal the full forward's"
                else:
                    diff = float((head - full).abs().max())
                    self.path, self.path_reason = "full", f"head-only losses differ from the full forward's by {diff:.3g}"
        if self.path == "full":
            log.warning("%s (%s): fitting through the full forward", self.path_reason,
                        self.base.model.config.model_type)

    def _chunk_counts(self) -> torch.Tensor:
        return torch.cat([self._chunk(j, 1)["counts"] for j in range(len(self.chunks))])

    def _sums(self, population: int, path: str | None = None) -> torch.Tensor:
        """[population, n_shots] summed target-token cross-entropies; row p under composition p."""
        out = []
        logits_at = self._head_logits if (path or self.path) == "head" else self._full_logits
        for j in range(len(self.chunks)):
            b = self._chunk(j, population)
            logits = logits_at(b).float()
            tok = torch.nn.functional.cross_entropy(logits, b["targets"], reduction="none")
            sums = torch.zeros(b["mask"].shape[0], device=tok.device, dtype=tok.dtype).index_add_(0, b["row"], tok)
            out.append(sums.view(population, -1))
        return torch.cat(out, 1)

    def per_example(self, population: int = 1) -> torch.Tensor:
        """[population, n_shots] per-example token-mean losses."""
        return self._sums(population) / self._chunk_counts()

    def losses(self, population: int = 1, scale: LossScale = "per_example") -> torch.Tensor:
        """[population] objective values on the given scale (see the module doc)."""
        if scale == "per_example":
            return self.per_example(population).mean(1)
        sums, counts = self._sums(population), self._chunk_counts()
        per_batch = [sums[:, c].sum(1) / counts[c].sum() for c in self.chunks]  # HF's loss of each batch
        return torch.stack(per_batch, 1).sum(1) / self.n

    def loss(self, scale: LossScale = "per_example") -> torch.Tensor:
        return self.losses(1, scale)[0]
