"""LoRA training configuration (PEFT-style: a pydantic model with help text on every field)."""

from __future__ import annotations

from pydantic import Field

from lorasoup_core.config import StrictModel
from lorasoup_core.fingerprint import sha256_json

# Default LoRA targets by model family: the attention query and value projections, as LoraHub's pool.
DEFAULT_TARGETS = {"llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
                   "gemma": ["q_proj", "v_proj"], "t5": ["q", "v"], "mt5": ["q", "v"]}


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
    max_length: int = Field(256, ge=8, description="Tokens per example (prompt is truncated from the left).")
    seed: int = Field(0, description="Seed for LoRA init and example order.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    eval_batch_size: int = Field(16, ge=1, description="Batch size for the validation loss.")
    max_validation: int = Field(64, ge=0, description="Validation examples scored before and after training.")

    @property
    def fingerprint(self) -> str:
        return sha256_json(self.model_dump(mode="json"))

    def targets_for(self, model) -> list[str]:
        if self.target_modules:
            return list(self.target_modules)
        model_type = getattr(model.config, "model_type", "")
        if model_type in DEFAULT_TARGETS:
            return DEFAULT_TARGETS[model_type]
        import torch

        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"no default LoRA targets for model type {model_type!r}; set target_modules to some of: "
                         f"{', '.join(names)}")
