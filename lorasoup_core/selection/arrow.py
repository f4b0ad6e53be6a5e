"""The `arrow` filter: rank candidates by how the target's shots align with each adapter's Arrow prototypes.

Arrow (Ostapenko et al. 2024, "Towards Modular LLMs by Building and Reusing a Library of LoRAs") gives each
LoRA, per adapted module, a prototype: the top right singular vector of B·A, the input direction the adapter
changes most. Its router sends a token to the adapters whose prototypes the token's input aligns with
(|x·v|). This filter asks the same question once per candidate for the whole target: the mean over the
shots' real tokens and the adapted modules of |cos(x, v)|. The cosine (not PEFT's raw |x·v|) so that a few
tokens with large norms (the first token's attention sink) do not decide the ranking; the mean over modules
so that every layer counts once. It reads only the adapters' weights and the shots: no stored examples, so
it ranks imported adapters the embedding filter has to skip.

Prototypes are PEFT's own (`ArrowLoraLinearLayer.top_right_singular_vec_from_BA`, a seeded power iteration),
cached on disk per adapter content (LORASOUP_ARROW_CACHE, default $LORASOUP_HOME/cache/arrow): a pool of 200
pays once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import torch

from lorasoup_core.adapters.factors import UnsupportedAdapter, read_lora_factors
from lorasoup_core.compose import Candidate
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel
from lorasoup_core.selection.base import FILTERS, skip

logger = logging.getLogger("lorasoup.selection")
SEED = 0  # PEFT's power iteration starts from a random vector; seeded, the prototypes are reproducible
VERSION = f"arrow-v1-seed{SEED}"  # part of the cache key: a change of method leaves old entries unread
_WEIGHT_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
_CROSS_KV = ("EncDecAttention.k", "EncDecAttention.v")  # T5's cross-attention reads the encoder's states


class PrototypeError(ValueError):
    """An adapter whose factors give no prototype (a NaN or inf, or B·A = 0 in some module)."""


def compute_prototypes(c: Candidate) -> dict[str, torch.Tensor]:
    """{module: unit prototype [in_features] float32}, as PEFT's Arrow layer computes them."""
    from peft import ArrowConfig
    from peft.tuners.lora.arrow import ArrowLoraLinearLayer

    try:
        factors, _ = read_lora_factors(c.path, name=c.name)
    except UnsupportedAdapter as err:
        raise PrototypeError(str(err)) from None
    out = {}
    for module, (a, b) in factors.items():
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise PrototypeError(f"adapter {c.name!r}: module {module} has a NaN or inf in its LoRA factors")
        if not ((b.float() @ a.float()).abs().amax() > 0):
            raise PrototypeError(f"adapter {c.name!r}: module {module} has B·A = 0 (all-zero factors): "
                                 "it changes nothing, so it has no direction to route by")
        config = ArrowConfig(rng_seed=SEED)
        config.task_adapter_names, config.gks_adapter_names = [], []  # create_arrow_model fills them; unused here
        layer = ArrowLoraLinearLayer(a.shape[1], config)
        out[module] = layer.top_right_singular_vec_from_BA(a, b).float()
    return out


def _content_key(c: Candidate) -> str:
    h = hashlib.sha256(VERSION.encode())
    for name in _WEIGHT_FILES:
        p = Path(c.path) / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _cache_dir() -> Path:
    from lorasoup_core.settings import Settings

    return Settings.from_env().arrow_cache


def prototypes(c: Candidate, cache: Path | None = None) -> dict[str, torch.Tensor]:
    """compute_prototypes, read from / written to the cache (atomically: a killed write leaves nothing)."""
    from safetensors.torch import load_file, save_file

    folder = cache or _cache_dir()
    path = folder / f"{_content_key(c)}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception:  # a corrupt entry is recomputed, never trusted
            logger.warning("arrow: recomputing the unreadable cache entry %s", path)
    protos = compute_prototypes(c)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file({m: v.contiguous() for m, v in protos.items()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return protos


@torch.inference_mode()
def alignment(base: LoadedModel, target: Task, shots: list[Example], protos: list[dict[str, torch.Tensor]],
              max_length: int = 256) -> torch.Tensor:
    """[len(protos)]: per candidate, the mean over its modules of the mean |cos| between each real token's
    input to that module (the shots' prompts and answers through the base) and the module's prototype."""
    from lorasoup_core.adapters.train import encode_examples
    from lorasoup_core.data.prompts import IGNORE

    if not shots:
        raise ValueError(f"arrow: no shots of {target.name!r} to align the adapters' prototypes with")
    modules = sorted(protos[0])
    if any(sorted(p) != modules for p in protos):
        raise ValueError("arrow: the candidates adapt different modules (run the `compatible` constraint first)")
    enc = encode_examples(base, target, shots, max_length)
    ids, attn = enc.tensors["input_ids"], enc.tensors["attention_mask"]
    label_mask = enc.tensors["labels"] != IGNORE
    stacks = {m: torch.stack([p[m] for p in protos]).to(base.device, torch.float32) for m in modules}  # [E, in]
    sums = {m: torch.zeros(len(protos), dtype=torch.float64) for m in modules}
    counts = dict.fromkeys(modules, 0)

    def real(name: str, width: int) -> torch.Tensor:
        """Which positions are real tokens: a seq2seq decoder's own inputs follow the answer (labels), the
        rest (a causal model, an encoder, cross-attention's keys and values) the input's attention mask."""
        decoder_own = base.kind == "seq2seq" and "decoder" in name and not name.endswith(_CROSS_KV)
        return label_mask if decoder_own and width == label_mask.shape[1] or width != ids.shape[1] else attn

    def hook(name):
        def run(_module, args):
            x = args[0].float()
            tok = x[real(name, x.shape[1]).bool()]  # [tokens, in]
            cos = (tok / tok.norm(dim=-1, keepdim=True).clamp_min(1e-12)) @ stacks[name].T
            sums[name] += cos.abs().sum(0).double().cpu()
            counts[name] += tok.shape[0]
        return run

    named = dict(base.model.named_modules())
    missing = [m for m in modules if m not in named]
    if missing:
        raise ValueError(f"arrow: the base model has no module {missing[0]} (adapted by the candidates)")
    handles = [named[m].register_forward_pre_hook(hook(m)) for m in modules]
    try:
        base.model(**enc.tensors)
    finally:
        for h in handles:
            h.remove()
    per_module = torch.stack([sums[m] / max(counts[m], 1) for m in modules])  # [modules, E]
    return per_module.mean(0).float()


@FILTERS.register("arrow")
def arrow_filter(base, cands, target, shots, spec, log):
    """Mean |cos| between the shots' token inputs and each adapter's Arrow prototypes (see the module doc).

    An adapter whose factors give no prototype (NaN, inf, all zeros, not a plain LoRA) is skipped with a
    line naming it, in the log and the `lorasoup.selection` logger; the others are ranked."""
    usable, protos = [], []
    for c in cands:
        try:
            protos.append(prototypes(c))
            usable.append(c)
        except (PrototypeError, ValueError) as err:
            skip(log, target, f"arrow: skipped adapter {c.name!r}: {err}")
    if not usable:
        return {}
    scores = alignment(base, target, shots, protos)
    return {c.name: float(s) for c, s in zip(usable, scores, strict=True)}
