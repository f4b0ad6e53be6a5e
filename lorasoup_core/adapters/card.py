"""The adapter card: lorasoup's metadata beside a plain PEFT adapter directory.

The card lives in ``lorasoup_card.json`` next to ``adapter_config.json``; PEFT ignores it, so the
directory stays loadable by ``PeftModel.from_pretrained`` without lorasoup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

CARD_FILE = "lorasoup_card.json"


def slug(text: str) -> str:
    """A name safe for paths, store keys and registry names ("HuggingFaceTB/SmolLM2" -> "HuggingFaceTB-SmolLM2"):
    only [A-Za-z0-9_.-], never starting with "." or "-", so never "..", a separator or an absolute path.
    A name with no safe character ("привет", "///") gets `x-<sha256 prefix>`: two such names stay apart."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or \
        f"x-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def slug_clash(names: Iterable[str]) -> str | None:
    """One line naming the first two different names with the same slug (one registry name, one work
    directory: their adapters would overwrite each other), or None."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(slug(name), name)
        if other != name:
            return (f"{other!r} and {name!r} both become the name {slug(name)!r} in paths and the registry; "
                    "rename one of them")
    return None


class AdapterCard(BaseModel):
    name: str = Field(description="Adapter name (the task name for pool adapters).")
    task: str = Field(description="The task the adapter was trained (or composed) for.")
    base_model: str = Field(description="Base model spec (preset, path or hub id); what lorasoup loads.")
    base_model_path: str | None = Field(None, description="Absolute path of the base's Hugging Face directory "
                                        "(a preset's converted GGUF), for tools that cannot read lorasoup specs.")
    base_model_hub_id: str | None = Field(None, description="Hub id the base's weights came from (a GGUF preset's "
                                          "are a quantization of them), where known.")
    base_fingerprint: str = Field(description="sha256 of the base weights.")
    data_fingerprint: str = Field(description="sha256 of the task data (or of the adapter weights when imported).")
    config_fingerprint: str = Field(description="sha256 of the training (or composition) config.")
    training: dict[str, Any] = Field(default_factory=dict, description="The resolved training config.")
    metrics: dict[str, float] = Field(default_factory=dict, description="val_loss, val_loss_base, train_loss, "
                                      "steps, train_tokens, tokens_per_s, seconds.")
    loss_curve: list[float] = Field(default_factory=list, description="Training loss, at most ~200 evenly "
                                    "spaced steps (for plots and MLflow series).")
    rank: int = Field(description="LoRA rank r (the largest when a rank pattern varies it).")
    alpha: float = Field(description="LoRA alpha.")
    target_modules: list[str] = Field(description="Adapted module names.")
    embedding: list[float] = Field(default_factory=list, description="Mean-pooled base-model embedding of "
                                   "the task's training prompts (L2-normalised), for retrieval.")
    origin: Literal["trained", "imported", "composed", "tuned"] = Field(
        "trained", description="How the adapter was made: trained for a pool task, imported, composed from the "
        "pool for a target, or tuned on a target's few shots (never a pool candidate).")
    kind: Literal["lora", "ia3", "full", "arrow"] = Field(
        "lora", description="What was made: a LoRA, PEFT's IA3, every weight of the base (full_weights.safetensors), "
        "or an Arrow router over several LoRAs (arrow_router.json; evaluated unmerged).")
    lineage: dict[str, Any] = Field(default_factory=dict, description="Composed adapters: candidates, method, weights.")
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            description="UTC creation time (ISO 8601).")

    @property
    def store_key(self) -> str:
        """Where the artifact store keeps this adapter: one key per (base, name, data, config)."""
        return (f"adapters/{slug(self.base_model)}/{slug(self.name)}/"
                f"{self.data_fingerprint[:12]}-{self.config_fingerprint[:12]}")

    @classmethod
    def read(cls, adapter_dir: str | Path) -> AdapterCard:
        path = Path(adapter_dir) / CARD_FILE
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no lorasoup card (is this a lorasoup adapter directory?)") from None
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{path}: invalid lorasoup card: {problems}") from None

    def write(self, adapter_dir: str | Path) -> Path:
        path = Path(adapter_dir) / CARD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1), encoding="utf-8")
        tmp.replace(path)  # atomic: the card is the completion marker of a local adapter directory
        return path
