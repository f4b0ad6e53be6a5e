"""The adapter card: lorasoup's metadata beside a plain PEFT adapter directory."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

CARD_FILE = "lorasoup_card.json"


def slug(text: str) -> str:
    """A name safe for store keys and registry names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or "x"


class AdapterCard(BaseModel):
    name: str = Field(description="Adapter name (the task name for pool adapters).")
    task: str = Field(description="The task the adapter was trained (or composed) for.")
    base_model: str = Field(description="Base model spec.")
    base_fingerprint: str = Field(description="sha256 of the base weights.")
    data_fingerprint: str = Field(description="sha256 of the task data (or adapter weights when imported).")
    config_fingerprint: str = Field(description="sha256 of the training (or composition) config.")
    training: dict[str, Any] = Field(default_factory=dict, description="The resolved training config.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="val_loss, val_loss_base, train_loss ...")
    rank: int
    alpha: float
    target_modules: list[str]
    embedding: list[float] = Field(default_factory=list, description="Mean-pooled base-model embedding of "
                                   "the task's training inputs (L2-normalised), for retrieval.")
    origin: Literal["trained", "imported", "composed"] = "trained"
    lineage: dict[str, Any] = Field(default_factory=dict, description="Composed adapters: candidates, method, weights.")
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def store_key(self) -> str:
        return (f"adapters/{slug(self.base_model)}/{slug(self.name)}/"
                f"{self.data_fingerprint[:12]}-{self.config_fingerprint[:12]}")

    @classmethod
    def read(cls, adapter_dir: str | Path) -> AdapterCard:
        path = Path(adapter_dir) / CARD_FILE
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no lorasoup card (is this a lorasoup adapter directory?)") from None

    def write(self, adapter_dir: str | Path) -> None:
        path = Path(adapter_dir) / CARD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        tmp.replace(path)  # the card is the completion marker of a local adapter directory
