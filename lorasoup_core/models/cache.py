"""The base model shared by the steps of one worker thread, loaded once per (spec, device, dtype).

Training and composition patch the model's modules while they run, so threads never share a copy;
each thread of a process keeps its own (loading from the converted cache takes about a second).
"""

from __future__ import annotations

import threading

from lorasoup_core.config import ModelConfig, StrictModel
from lorasoup_core.models import LoadedModel, load_model

_local = threading.local()
_load_lock = threading.Lock()


def shared_model(model: ModelConfig) -> LoadedModel:
    """This thread's copy of the configured base model."""
    cache: dict[tuple[str, str, str], LoadedModel] = _local.__dict__.setdefault("models", {})
    key = (model.spec, model.device, model.dtype)
    if key not in cache:
        with _load_lock:  # the first GGUF conversion must not run twice at once
            cache[key] = load_model(model.spec, device=model.device, dtype=model.dtype)
    return cache[key]


class BaseRef(StrictModel):
    """A base model by its config and the fingerprint of its weights: what results depend on, without the
    weights themselves (steps that cross a process or deployment boundary take this)."""

    model: ModelConfig
    fingerprint: str

    def load(self) -> LoadedModel:
        """This thread's copy of the model; an error when the weights under the spec have changed."""
        base = shared_model(self.model)
        if base.fingerprint != self.fingerprint:
            raise ValueError(f"base model {self.model.spec!r} has fingerprint {base.fingerprint[:12]} here, "
                             f"{self.fingerprint[:12]} where the run started: the weights under that spec differ")
        return base


def resolve_base(model: ModelConfig) -> BaseRef:
    return BaseRef(model=model, fingerprint=shared_model(model).fingerprint)
