"""Import existing PEFT LoRA adapters (local directories, hub repos, LoraHub's pool) into the registry.

Each adapter is checked against the base model before it is registered: every adapted module must
exist in the base with the shapes the LoRA factors need (A [r, in], B [out, r]). A different
`base_model_name_or_path` is only a warning (the same weights go by many names); a shape or module
mismatch, or a feature a LoRA composition cannot represent (DoRA, embedding LoRA, `modules_to_save`),
rejects that adapter with a reason naming it, and the others still register.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoup_core.adapters import CARD_FILE, AdapterCard, read_lora_factors, slug
from lorasoup_core.adapters.factors import UnsupportedAdapter
from lorasoup_core.fingerprint import sha256_file, sha256_json
from lorasoup_core.models import LoadedModel
from lorasoup_core.registry import AdapterRegistry, AdapterVersion

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
EXAMPLE_FILES = ("examples.jsonl", "examples.json")  # optional: inputs the adapter was trained on
# LoraHub's published pool: ~200 flan-t5-large LoRAs under the `lorahub` hub organisation.
HUB_POOLS = {"lorahub:flan-t5-large": ("lorahub", "flan_t5_large")}
_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}


class AdapterMismatch(ValueError):
    """An adapter that cannot be applied to the base model; the message says why."""


@dataclass
class ImportReport:
    ok: dict[str, AdapterVersion] = field(default_factory=dict)  # source -> its registered version
    rejected: dict[str, str] = field(default_factory=dict)  # source -> why it was not registered
    warnings: dict[str, list[str]] = field(default_factory=dict)  # source -> notes (registered anyway)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def expand_sources(sources: list[str]) -> tuple[list[str], dict[str, str]]:
    """Pool names (lorahub:flan-t5-large) -> their hub ids; returns (sources, rejected)."""
    out, rejected = [], {}
    for src in sources:
        if src not in HUB_POOLS:
            out.append(src)
            continue
        if hub_offline():
            rejected[src] = f"{src}: listing the hub pool needs the network (HF_HUB_OFFLINE is set)"
            continue
        from huggingface_hub import HfApi

        author, pattern = HUB_POOLS[src]
        try:
            out += sorted(m.id for m in HfApi().list_models(author=author, search=pattern))
        except Exception as err:  # network or hub errors: report, import the rest
            rejected[src] = f"{src}: cannot list the hub pool ({type(err).__name__}: {err})"
    return out, rejected


def resolve_source(src: str) -> Path:
    """A local adapter directory for `src`: the path itself, or a download of the hub repo."""
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir():
            raise AdapterMismatch(f"{src}: not a directory (a PEFT adapter is a directory with adapter_config.json)")
        return path
    if src.count("/") != 1 or src.startswith((".", "/", "~")):
        raise AdapterMismatch(f"{src}: no such directory, and not a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:  # offline, this still finds a repo already in the local cache
        return Path(snapshot_download(src, allow_patterns=["*.json", *WEIGHT_FILES, *EXAMPLE_FILES]))
    except Exception as err:
        why = ("not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if hub_offline()
               else f"{type(err).__name__}: {err}")
        raise AdapterMismatch(f"{src}: cannot download the hub adapter ({why})") from None


def _in_out(module: Any) -> tuple[int, int] | None:
    """(in, out) features of a Linear-like module (transformers' Conv1D stores them transposed)."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.ndim == 2:
        return int(weight.shape[0]), int(weight.shape[1])
    return None


def check_adapter(adapter_dir: Path, base: LoadedModel, label: str) -> tuple[dict[str, Any], dict[str, int], list[str]]:
    """Raise AdapterMismatch unless the LoRA fits `base`; returns (adapter config, {module: rank}, warnings)."""
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise AdapterMismatch(f"{label}: not a PEFT adapter (no adapter_config.json in {adapter_dir})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterMismatch(f"{label}: adapter_config.json is not valid JSON ({err})") from None
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterMismatch(f"{label}: peft_type is {config.get('peft_type')!r}; only LoRA adapters can be imported")
    if not any((adapter_dir / f).is_file() for f in WEIGHT_FILES):
        raise AdapterMismatch(f"{label}: no adapter weights ({' or '.join(WEIGHT_FILES)}) in {adapter_dir}")
    warnings = []
    named = config.get("base_model_name_or_path")
    if named and named != base.spec:
        warnings.append(f"{label}: trained on {named!r}, importing for {base.spec!r} (shapes match)")
    task_type = config.get("task_type")
    if task_type and task_type != _TASK_TYPES[base.kind]:
        warnings.append(f"{label}: task_type {task_type} but the base is a {base.kind} model")
    try:
        factors, _ = read_lora_factors(adapter_dir)
    except UnsupportedAdapter as err:  # DoRA, embedding LoRA, modules_to_save ...: the reason names the feature
        raise AdapterMismatch(f"{label}: {err.reason}") from None
    except (ValueError, OSError, RuntimeError) as err:
        raise AdapterMismatch(f"{label}: unreadable LoRA weights: {err}") from None
    modules = dict(base.model.named_modules())
    problems = []
    for name, (a, b) in factors.items():
        shape = _in_out(modules[name]) if name in modules else None
        if name not in modules:
            problems.append(f"module {name} does not exist in {base.spec}")
        elif shape is None:
            problems.append(f"module {name} is a {type(modules[name]).__name__}, not a Linear layer")
        elif (a.shape[1], b.shape[0]) != shape:
            problems.append(f"module {name}: LoRA maps {a.shape[1]} -> {b.shape[0]} features (A {tuple(a.shape)}, "
                            f"B {tuple(b.shape)}) but {base.spec} has {shape[0]} -> {shape[1]}")
    missing = [n for n in factors if n not in modules]
    if len(missing) == len(factors):
        raise AdapterMismatch(f"{label}: does not fit base model {base.spec}: none of its {len(factors)} adapted "
                              f"modules exists there (first: {missing[0]}); it was made for another architecture")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise AdapterMismatch(f"{label}: does not fit base model {base.spec}: {'; '.join(problems[:3])}{more}")
    return config, {name: int(a.shape[0]) for name, (a, _) in factors.items()}, warnings


def _examples(adapter_dir: Path) -> list[str]:
    for fname in EXAMPLE_FILES:
        path = adapter_dir / fname
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            rows = [json.loads(x) for x in text.splitlines() if x.strip()] if fname.endswith("l") else json.loads(text)
            return [r["input"] if isinstance(r, dict) else str(r) for r in rows][:64]
    return []


def stage_import(src: str, adapter_dir: Path, base: LoadedModel, out: Path) -> tuple[AdapterCard, list[str]]:
    """Check the adapter and write a registrable copy (PEFT files + an `imported` card) to `out`."""
    config, modules, warnings = check_adapter(adapter_dir, base, src)
    weights = next(adapter_dir / f for f in WEIGHT_FILES if (adapter_dir / f).is_file())
    out.mkdir(parents=True)
    for f in ("adapter_config.json", weights.name, *EXAMPLE_FILES):
        if (adapter_dir / f).is_file():
            shutil.copy2(adapter_dir / f, out / f)
    name = slug(src.rstrip("/").rsplit("/", 1)[-1])
    old = None
    if (adapter_dir / CARD_FILE).is_file():  # a lorasoup adapter: keep its task name and embedding
        try:
            old = AdapterCard.read(adapter_dir)
        except ValueError:
            warnings.append(f"{src}: its {CARD_FILE} is invalid and was ignored")
    embedding: list[float] = []
    if old is not None and old.base_fingerprint == base.fingerprint:
        embedding = old.embedding
    elif texts := _examples(adapter_dir):
        from lorasoup_core.adapters.embed import centroid, embed_texts

        embedding = centroid(embed_texts(base, texts))
    card = AdapterCard(
        name=old.name if old else name, task=old.task if old else name, base_model=base.spec,
        base_fingerprint=base.fingerprint, data_fingerprint=sha256_file(weights),
        config_fingerprint=sha256_json(config),
        training={"imported_from": src, "base_model_name_or_path": config.get("base_model_name_or_path")},
        metrics=dict(old.metrics) if old and old.base_fingerprint == base.fingerprint else {},
        rank=max(modules.values()), alpha=float(config.get("lora_alpha", 8)),
        target_modules=sorted({m.rsplit(".", 1)[-1] for m in modules}), embedding=embedding, origin="imported")
    card.write(out)
    return card, warnings


def import_adapters(sources: list[str], base: LoadedModel, registry: AdapterRegistry) -> ImportReport:
    """Check and register each source; a failing source is reported in `rejected`, the rest register."""
    report = ImportReport()
    expanded, report.rejected = expand_sources(list(sources))
    with tempfile.TemporaryDirectory(prefix="lorasoup-import-") as tmp:
        for i, src in enumerate(expanded):
            try:
                adapter_dir = resolve_source(src)
                card, warnings = stage_import(src, adapter_dir, base, Path(tmp) / f"staged-{i}")
                report.ok[src] = registry.register(card, Path(tmp) / f"staged-{i}")
            except AdapterMismatch as err:
                report.rejected[src] = str(err)
                continue
            if warnings:
                report.warnings[src] = warnings
    return report
