"""LoRA training configuration (PEFT-style: a pydantic model with help text on every field)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lorasoup_core.config import StrictModel
from lorasoup_core.fingerprint import sha256_json

# Default LoRA targets by model family: the attention query and value projections, as LoraHub's pool.
DEFAULT_TARGETS = {
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "mixtral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"], "qwen3": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"], "t5": ["q", "v"], "mt5": ["q", "v"], "umt5": ["q", "v"],
}


class TrainingConfig(StrictModel):
    rank: int = Field(8, ge=1, description="LoRA rank r.")
    alpha: float = Field(16, gt=0, description="LoRA alpha; the update is scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(None, description="Module names to adapt; None: the model family's "
                                             "default (q_proj, v_proj for Llama-likes; q, v for T5).")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    steps: int = Field(100, ge=1, description="Optimizer steps (ignored when `epochs` is set).")
    epochs: float | None = Field(None, gt=0, description="Passes over the train split; overrides `steps`.")
    batch_size: int = Field(8, ge=1, description="Examples per step.")
    max_length: int = Field(256, ge=8, description="Tokens per example (the prompt loses its start first).")
    seed: int = Field(0, description="Seed for the LoRA init, dropout and the example order.")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear learning-rate warm-up from 0.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    eval_batch_size: int = Field(16, ge=1, description="Batch size for the validation loss.")
    max_validation: int = Field(64, ge=0, description="Validation examples scored before and after training "
                                "(the first ones of the split; 0 skips validation).")

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of every field: equal configs train equal adapters."""
        return sha256_json(self.model_dump(mode="json"))

    def steps_for(self, n_train: int) -> int:
        """Optimizer steps: from `epochs` when set, else `steps`."""
        if self.epochs is not None:
            return max(1, -(-int(self.epochs * n_train) // self.batch_size))
        return self.steps

    def targets_for(self, model: Any) -> list[str]:
        """The configured targets, or the family default; a clear error when they name no Linear module, or
        when `rank` is above what the smallest adapted layer can use."""
        targets = self._targets(model)
        self._check_rank(model, targets)
        return targets

    def _targets(self, model: Any) -> list[str]:
        import torch

        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        model_type = getattr(model.config, "model_type", "")
        if self.target_modules:
            missing = [t for t in self.target_modules if t not in linear]
            if missing:
                raise ValueError(f"target_modules {missing} name no Linear module of this {model_type or 'model'}; "
                                 f"its Linear modules: {', '.join(linear)}")
            return list(self.target_modules)
        if model_type in DEFAULT_TARGETS:
            return list(DEFAULT_TARGETS[model_type])
        for guess in (["q_proj", "v_proj"], ["q", "v"]):  # unlisted Llama-likes and T5-likes
            if set(guess) <= set(linear):
                return guess
        raise ValueError(f"no default LoRA targets for model type {model_type!r}; set target_modules to some of: "
                         f"{', '.join(linear)}")

    def _check_rank(self, model: Any, targets: list[str]) -> None:
        """B @ A of a layer with `in` inputs and `out` outputs has rank at most min(in, out): a larger r adds
        nothing but memory (r = 1e8 asks the allocator for terabytes), so it is refused before allocating."""
        import torch

        sizes = {(n.rsplit(".", 1)[-1], m.in_features, m.out_features) for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in targets}
        if not sizes:
            return
        name, n_in, n_out = min(sizes, key=lambda s: (min(s[1], s[2]), s[0]))
        if self.rank > min(n_in, n_out):
            raise ValueError(f"rank {self.rank} is above {min(n_in, n_out)}, the most a LoRA on {name} "
                             f"({n_in} in, {n_out} out features) can use; set rank to at most {min(n_in, n_out)}")
