"""Base models: one entry point resolves a spec to (model, tokenizer, kind).

Specs: a preset name (``smollm2-135m``, ``tiny-llama``, ``tiny-t5``), a path to a ``.gguf`` file,
a local Hugging Face directory, or a hub id (needs the network or a warm HF cache).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lorasoup_core.models import files, tiny  # noqa: F401  (register presets)
from lorasoup_core.models.base import (  # noqa: I001
    PRESETS,
    LoadedModel,
    ModelKind,
    ModelSpecError,
    resolve_device,
    resolve_dtype,
)

__all__ = ["PRESETS", "LoadedModel", "ModelKind", "ModelSpecError", "load_model", "known_specs", "resolve_device",
           "resolve_dtype"]


def known_specs() -> str:
    return (f"presets: {', '.join(PRESETS.names())}; or a path to a .gguf file, a local Hugging Face "
            "model directory, or a hub id (online or cached)")


def load_model(spec: str, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load a base model by spec; CUDA+bf16 when available, else CPU+fp32, unless overridden."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if spec in PRESETS:
        return PRESETS.get(spec)(dev, dt)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return files.load_gguf(spec, dev, dt)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSpecError(f"{path} is a directory without config.json; {known_specs()}")
        return files.load_hf(str(path), dev, dt)
    if path.is_file() and path.suffix in files.PICKLE_SUFFIXES:
        raise ModelSpecError(files.pickle_refusal(path))
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelSpecError(f"unknown model spec {spec!r}; {known_specs()}")
    try:
        return files.load_hf(spec, dev, dt)
    except OSError as err:  # offline, missing repo, or no access
        raise ModelSpecError(f"cannot load model {spec!r} from the hub or its cache ({err.__class__.__name__}; "
                             f"lorasoup loads safetensors weights only); {known_specs()}") from None
