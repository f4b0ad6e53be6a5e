"""What a model source returns, the source registry, and device/dtype choice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lorasoup_core.plugins import Registry

ModelKind = Literal["causal", "seq2seq"]


class ModelSpecError(ValueError):
    """A model spec that names nothing loadable; the message lists the specs that exist."""


@dataclass
class LoadedModel:
    """A base model ready for LoRA work."""

    model: Any  # transformers PreTrainedModel, in eval mode
    tokenizer: Any
    kind: ModelKind
    spec: str  # what the user asked for; stored as the base-model id in adapter cards and the registry
    fingerprint: str  # sha256 identifying the weights (not the spec string)
    device: torch.device
    dtype: torch.dtype
    # Where other tools (PEFT, lm-eval, vLLM) find these weights; lorasoup itself loads by `spec`.
    hf_path: str | None = None  # absolute HF directory they load from (a GGUF's converted cache), if any
    hub_id: str | None = None  # the hub repository they came from, where known

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# A preset source builds a model by name: (device, dtype) -> LoadedModel.
PRESETS: Registry[Callable[[torch.device, torch.dtype], LoadedModel]] = Registry("model preset")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available, else CPU, unless told otherwise."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on CUDA (when the card supports it), fp32 on CPU, unless told otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: auto, {', '.join(sorted(_DTYPES))}") from None


def kind_of(config: Any) -> ModelKind:
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def ensure_pad_token(tokenizer: Any) -> None:
    """Batched training and generation need a pad token; reuse EOS where the tokenizer has none."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def finish(model: Any, tokenizer: Any, spec: str, fingerprint: str, device: torch.device,
           dtype: torch.dtype, hf_path: str | None = None, hub_id: str | None = None) -> LoadedModel:
    """Move to device/dtype, freeze, switch to eval: the shared tail of every source."""
    ensure_pad_token(tokenizer)
    model = model.to(device=device, dtype=dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind_of(model.config), spec=spec,
                       fingerprint=fingerprint, device=device, dtype=dtype, hf_path=hf_path, hub_id=hub_id)


def params_fingerprint(model: Any) -> str:
    """sha256 over parameter names, shapes and fp32 bytes (cheap for the tiny presets)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
