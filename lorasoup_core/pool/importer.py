"""Import existing PEFT LoRA adapters (local directories, hub repos, LoraHub's pool) into the registry.

Each adapter is checked before it is registered, and a failing one is rejected with one line naming it
and the reason while the others still register:

- every adapted module must exist in the base with the shapes the LoRA factors need (A [r, in],
  B [out, r]); a different `base_model_name_or_path` is only a warning (the same weights go by many names);
- features a LoRA composition cannot represent (DoRA, embedding LoRA, `modules_to_save` ...) are refused
  with the feature named (`adapters.factors.unsupported_features`, the check composition also runs);
- weights are safetensors, or a tensor-only pickle `adapter_model.bin` (2023 PEFT repos, LoraHub's pool)
  read with `torch.load(weights_only=True)` after a scan of its opcodes finds no global beyond tensors
  (`bin_weights`) and stored as safetensors, the card saying so; a pickle that calls anything else
  (code) is refused naming the file and the callable, and so is a truncated or corrupt weights file;
- every factor must be finite with |w| <= MAX_ABS_WEIGHT (1e4): trained LoRA factors are O(1), and a
  factor of 1e4 already makes an update beyond float16's range once multiplied with its partner;
- the files read or copied (config, weights, examples, card) must not be symbolic links to places
  outside the adapter directory (a hub download's links into its own cache repo are fine).

An imported adapter is never trusted like a trained one. Its card's metrics are kept only as
`claimed_<name>` (never `val_loss`, so it never competes for `champion`), its card's task and name are
kept only when no trained adapter of the pool has that name (else `<name>-imported`, so it never becomes
the `latest` version of a trained task), and its embedding is recomputed from `examples.jsonl` when
there is one. Hub repos (and LoraHub's pool, listed from the hub) come through `hub`: one pinned commit
each, registered with its repo and commit as tags so a rerun skips what is already imported.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoup_core.adapters import CARD_FILE, AdapterCard, read_lora_factors, slug
from lorasoup_core.adapters.factors import MAX_ABS_WEIGHT, UnsupportedAdapter
from lorasoup_core.fingerprint import sha256_file, sha256_json
from lorasoup_core.models import LoadedModel
from lorasoup_core.pool import hub
from lorasoup_core.pool.bin_weights import PICKLE, SAFETENSORS, PickleRefused, convert
from lorasoup_core.pool.hub import HUB_POOLS, README
from lorasoup_core.registry import AdapterRegistry, AdapterVersion, model_name
from lorasoup_core.settings import fault

WEIGHT_FILES = (SAFETENSORS, PICKLE)
EXAMPLE_FILES = ("examples.jsonl", "examples.json")  # optional: inputs the adapter was trained on
MAX_EXAMPLES = 64  # examples embedded for the card's embedding
CLAIMED = "claimed_"  # prefix of the metrics an imported card claims (never val_loss itself)
# what an import reads from a hub repo (the weights: safetensors, else the pickle)
HUB_FILES = ("adapter_config.json", *WEIGHT_FILES, *EXAMPLE_FILES, CARD_FILE, README)
_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}


class AdapterMismatch(ValueError):
    """An adapter that cannot be (safely) imported; the message names it and says why."""


@dataclass
class ImportReport:
    ok: dict[str, AdapterVersion] = field(default_factory=dict)  # source -> its registered version
    rejected: dict[str, str] = field(default_factory=dict)  # source -> why it was not registered (one line)
    warnings: dict[str, list[str]] = field(default_factory=dict)  # source -> notes (registered anyway)
    resumed: list[str] = field(default_factory=list)  # hub repos already registered at the commit served now


def expand_sources(sources: list[str]) -> tuple[list[str], dict[str, str]]:
    """Pool names (lorahub:flan-t5-large) -> their hub ids; returns (sources, rejected)."""
    out, rejected = [], {}
    for src in sources:
        if src not in HUB_POOLS:
            out.append(src)
        elif hub.offline():
            rejected[src] = f"{src}: listing the hub pool needs the network (HF_HUB_OFFLINE is set)"
        else:
            try:
                out += [repo for repo in hub.list_pool(src) if repo not in out]
            except hub.HubError as err:  # network or hub errors: report, import the rest
                rejected[src] = str(err)
    return out, rejected


def _resolve(src: str) -> tuple[Path | None, Path | None, hub.RepoInfo | str | None]:
    """(adapter directory, the directory its files may link into, hub source): the directory itself
    for a local source (no hub source); offline, a hub repo's cached snapshot and its commit; online,
    only the repo's commit and files (`hub.RepoInfo`), downloaded once the caller knows it needs them.
    Raises AdapterMismatch or hub.HubError."""
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir():
            raise AdapterMismatch(f"{src}: not a directory (a PEFT adapter is a directory with adapter_config.json)")
        return path, path, None
    if not hub.is_hub_id(src):
        raise AdapterMismatch(f"{src}: no such directory, and not a hub id (owner/name)")
    if hub.offline():  # a repo already in the local cache still imports
        return hub.cached(src, list(HUB_FILES))
    info = hub.repo_info(src, HUB_FILES)
    if SAFETENSORS in info.files and PICKLE in info.files:  # the safetensors suffice
        info.files.remove(PICKLE)
    return None, None, info


def check_links(adapter_dir: Path, label: str, root: Path | None = None) -> None:
    """Refuse files the importer reads or copies that are symbolic links out of the adapter directory
    (or `root`): following one would publish whatever it points at into the shared store."""
    inside = (root or adapter_dir).resolve()
    for name in ("adapter_config.json", *WEIGHT_FILES, *EXAMPLE_FILES, CARD_FILE, README):
        path = adapter_dir / name
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            raise AdapterMismatch(f"{label}: {name} is a symbolic link to {path.resolve()}, outside the adapter "
                                  "directory; refusing to import it (copy the file into the directory instead)")


def _in_out(module: Any) -> tuple[int, int] | None:
    """(in, out) features of a Linear-like module (transformers' Conv1D stores them transposed)."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.ndim == 2:
        return int(weight.shape[0]), int(weight.shape[1])
    return None


def _unreadable(err: Exception) -> str:
    """One line for weights that could not be read (never a loader's advice to turn safety checks off)."""
    from safetensors import SafetensorError

    text = " ".join(str(err).split()) or type(err).__name__
    if "weights_only" in text:
        text = "not a plain tensor file"
    if isinstance(err, SafetensorError):
        return f"{SAFETENSORS} is not a readable safetensors file, truncated or corrupt ({text})"
    return f"unreadable LoRA weights ({type(err).__name__}: {text[:300]})"


def check_values(factors: dict[str, tuple[Any, Any]], scaling: dict[str, float], label: str) -> None:
    """Refuse non-finite factors and entries (or a scaling alpha / r) beyond MAX_ABS_WEIGHT, naming the tensor."""
    import torch

    problems = []
    for module, (a, b) in factors.items():
        for half, t in (("lora_A", a), ("lora_B", b)):
            tensor = f"{module}.{half}.weight"
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                bad = t[~finite].float()
                kinds = [k for k, hit in (("NaN", bool(bad.isnan().any())), ("inf", bool((bad == math.inf).any())),
                                          ("-inf", bool((bad == -math.inf).any()))) if hit]
                problems.append(f"tensor {tensor} has {bad.numel()} non-finite values ({', '.join(kinds)})")
            elif t.numel() and (peak := float(t.abs().max())) > MAX_ABS_WEIGHT:
                problems.append(f"tensor {tensor} has |w| = {peak:.3g}, over the limit of {MAX_ABS_WEIGHT:g} "
                                "for LoRA factors (trained ones are about 1)")
        value = scaling.get(module)
        if value is not None and not (math.isfinite(value) and abs(value) <= MAX_ABS_WEIGHT):
            problems.append(f"module {module}: scaling alpha / r = {value:g} is not finite or over {MAX_ABS_WEIGHT:g}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AdapterMismatch(f"{label}: broken or hostile weights: {problems[0]}{more}")


def convert_pickle(adapter_dir: Path, label: str, out: Path) -> tuple[Path, dict[str, str]]:
    """`bin_weights.convert`: the adapter copied to `out` with its tensor-only pickle as safetensors, and what
    the card records about that. Raises AdapterMismatch for a pickle that is more than tensors (code)."""
    try:  # the links of the files copied were checked by the caller
        return convert(adapter_dir, label, out, ("adapter_config.json", *EXAMPLE_FILES, CARD_FILE, README))
    except PickleRefused as err:
        raise AdapterMismatch(str(err)) from None


def check_adapter(adapter_dir: Path, base: LoadedModel, label: str, root: Path | None = None,
                  ) -> tuple[dict[str, Any], dict[str, int], list[str]]:
    """Raise AdapterMismatch unless the LoRA is safe to read and fits `base`; returns (adapter config,
    {module: rank}, warnings). `root`: where the files may link to (default: `adapter_dir`)."""
    check_links(adapter_dir, label, root)
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise AdapterMismatch(f"{label}: not a PEFT adapter (no adapter_config.json in {adapter_dir})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterMismatch(f"{label}: adapter_config.json is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise AdapterMismatch(f"{label}: adapter_config.json is not a JSON object")
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterMismatch(f"{label}: peft_type is {config.get('peft_type')!r}; only LoRA adapters can be imported")
    if not (adapter_dir / SAFETENSORS).is_file():
        if (adapter_dir / PICKLE).is_file():  # checked as the safetensors copy an import would register
            with tempfile.TemporaryDirectory(prefix="lorasoup-check-") as tmp:
                return check_adapter(convert_pickle(adapter_dir, label, Path(tmp) / "converted")[0], base, label)
        raise AdapterMismatch(f"{label}: no adapter weights ({SAFETENSORS} or {PICKLE}) in {adapter_dir}")
    warnings = []
    named = config.get("base_model_name_or_path")
    if named and named != base.spec:
        warnings.append(f"{label}: trained on {named!r}, importing for {base.spec!r} (shapes match)")
    task_type = config.get("task_type")
    if task_type and task_type != _TASK_TYPES[base.kind]:
        warnings.append(f"{label}: task_type {task_type} but the base is a {base.kind} model")
    try:
        factors, scaling = read_lora_factors(adapter_dir)
    except UnsupportedAdapter as err:  # DoRA, embedding LoRA, modules_to_save ...: the reason names the feature
        raise AdapterMismatch(f"{label}: {err.reason}") from None
    except Exception as err:  # truncated or corrupt files, odd configs: this adapter only
        raise AdapterMismatch(f"{label}: {_unreadable(err)}") from None
    check_values(factors, scaling, label)
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


def _examples(adapter_dir: Path, label: str) -> list[str]:
    """Up to MAX_EXAMPLES inputs from examples.jsonl / examples.json (strings, or objects with `input`)."""
    for fname in EXAMPLE_FILES:
        path = adapter_dir / fname
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            if fname.endswith("l"):
                rows = []
                for line_no, line in enumerate(text.splitlines(), start=1):
                    if line.strip() and len(rows) < MAX_EXAMPLES:
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise AdapterMismatch(f"{label}: {fname}: line {line_no}: invalid JSON ({err.msg})") from None
            else:
                rows = json.loads(text)
        except UnicodeDecodeError:
            raise AdapterMismatch(f"{label}: {fname} is not UTF-8 text") from None
        except json.JSONDecodeError as err:
            raise AdapterMismatch(f"{label}: {fname}: invalid JSON at line {err.lineno} ({err.msg})") from None
        if not isinstance(rows, list):
            raise AdapterMismatch(f"{label}: {fname}: expected a list of examples")
        texts = []
        for i, row in enumerate(rows[:MAX_EXAMPLES]):
            value = row.get("input") if isinstance(row, dict) else row
            if not isinstance(value, str) or not value.strip():
                raise AdapterMismatch(f"{label}: {fname}: row {i}: expected a non-empty string or an object with a "
                                      "string 'input'")
            texts.append(value)
        return texts
    return []


def _card_embedding(old: AdapterCard | None, base: LoadedModel) -> list[float]:
    """The old card's embedding when it is for this base and well-formed, else []."""
    if old is None or old.base_fingerprint != base.fingerprint or not old.embedding:
        return []
    size = getattr(base.model.config, "hidden_size", None)
    values = old.embedding
    if (isinstance(size, int) and len(values) != size) or not all(math.isfinite(v) for v in values):
        return []
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values] if norm > 0 else []


def _unclaimed_name(registry: AdapterRegistry, base: LoadedModel, name: str, task: str) -> str | None:
    """None when no trained (or composed) adapter on `base` uses `name` or `task`; else a free
    `<name>-imported` name, so an import never becomes the newest version of a pool task."""
    others = [v for v in registry.list(base_model=base.spec) if v.origin != "imported"]
    taken = {v.name for v in others} | {model_name(base.spec, v.task) for v in others}
    if model_name(base.spec, name) not in taken and model_name(base.spec, task) not in taken:
        return None
    n, free = 1, slug(f"{name}-imported")
    while model_name(base.spec, free) in taken:
        n += 1
        free = slug(f"{name}-imported-{n}")
    return free


def stage_import(src: str, adapter_dir: Path, base: LoadedModel, out: Path, registry: AdapterRegistry | None = None,
                 root: Path | None = None, revision: str | None = None) -> tuple[AdapterCard, list[str]]:
    """Check the adapter and write a registrable copy (PEFT files + an `imported` card) to `out`.

    The card claims nothing: an old lorasoup card's metrics are kept as `claimed_*`, its name and task
    only when `registry` has no trained adapter of that name (else `<name>-imported`), its embedding
    only when there are no examples to compute one from. Pickle weights are stored as safetensors and
    the card says so; `revision` is the hub commit of a hub source."""
    check_links(adapter_dir, src, root)
    converted = None
    if not (adapter_dir / SAFETENSORS).is_file() and (adapter_dir / PICKLE).is_file():
        adapter_dir, converted = convert_pickle(adapter_dir, src, out.with_name(f"{out.name}-converted"))
        root = adapter_dir
    config, modules, warnings = check_adapter(adapter_dir, base, src, root)
    texts = _examples(adapter_dir, src)
    out.mkdir(parents=True)
    for f in ("adapter_config.json", SAFETENSORS, *EXAMPLE_FILES):
        if (adapter_dir / f).is_file():
            shutil.copy2(adapter_dir / f, out / f)
    old = None
    if (adapter_dir / CARD_FILE).is_file():  # a lorasoup adapter: its name, task, metrics are claims
        try:
            old = AdapterCard.read(adapter_dir)
        except ValueError:
            warnings.append(f"{src}: its {CARD_FILE} is invalid and was ignored")
    same_base = old is not None and old.base_fingerprint == base.fingerprint
    name = old.name if old else slug(src.rstrip("/").rsplit("/", 1)[-1])
    task = old.task if old else name
    data_fp, config_fp = sha256_file(out / SAFETENSORS), sha256_json(config)
    if registry is not None and registry.find(base.fingerprint, data_fp, config_fp) is None:
        free = _unclaimed_name(registry, base, name, task)
        if free is not None:
            warnings.append(f"{src}: trained adapters for {task!r} are registered on {base.spec}; imported as "
                            f"{free!r} so that it never replaces them")
            name = task = free
    training: dict[str, Any] = {"imported_from": src, "base_model_name_or_path": config.get("base_model_name_or_path")}
    if revision:
        training["hub"] = {"repo": src, "revision": revision, "endpoint": hub.endpoint()[0]}
    if meta := hub.card_metadata(adapter_dir):
        training["card_metadata"] = meta  # what the README card says (license, datasets ...), unverified
    if converted:
        training["converted_from"] = converted
        warnings.append(f"{src}: {PICKLE} holds only tensors; stored as {SAFETENSORS}")
    if old is not None:
        training["claimed"] = {"name": old.name, "task": old.task, "origin": old.origin, "base_model": old.base_model,
                               "created_at": old.created_at}
    embedding: list[float] = []
    if texts:
        from lorasoup_core.adapters.embed import centroid, embed_texts

        embedding = centroid(embed_texts(base, texts))
        training["embedding_from"] = f"{len(texts)} examples"
    elif embedding := _card_embedding(old, base):
        training["embedding_from"] = "its card (unverified)"
        warnings.append(f"{src}: no {' or '.join(EXAMPLE_FILES)}: the task embedding is its card's, unverified")
    else:
        warnings.append(f"{src}: no {' or '.join(EXAMPLE_FILES)} (inputs it was trained on): no task embedding, "
                        "so the embedding filter skips it")
    claimed = {k if k.startswith(CLAIMED) else CLAIMED + k: float(v) for k, v in (old.metrics if same_base else {}
                                                                                 ).items() if math.isfinite(v)}
    card = AdapterCard(
        name=name, task=task, base_model=base.spec, base_fingerprint=base.fingerprint, data_fingerprint=data_fp,
        config_fingerprint=config_fp, training=training, metrics=claimed, rank=max(modules.values()),
        alpha=float(config.get("lora_alpha", 8)), target_modules=sorted({m.rsplit(".", 1)[-1] for m in modules}),
        embedding=embedding, origin="imported")
    card.write(out)
    return card, warnings


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def import_adapters(sources: list[str], base: LoadedModel, registry: AdapterRegistry) -> ImportReport:
    """Check and register each source; a failing source is reported in `rejected` (one line naming it),
    the rest register. A hub repo already registered at the commit the hub serves now is not downloaded
    again (`resumed`): a rerun after a kill imports only what is missing, and nothing twice."""
    report = ImportReport()
    expanded, report.rejected = expand_sources(list(sources))
    done = hub.registered(registry, base) if any(hub.is_hub_id(s) for s in expanded) else {}
    with tempfile.TemporaryDirectory(prefix="lorasoup-import-") as tmp:
        for i, src in enumerate(expanded):
            staged = Path(tmp) / f"staged-{i}"
            try:
                known = [v for (repo, _), v in done.items() if repo == src]
                if known and hub.offline():  # no hub to ask for a newer commit: what is registered stands
                    report.ok[src] = max(known, key=lambda v: int(v.version))
                    report.resumed.append(src)
                    continue
                adapter_dir, root, source = _resolve(src)
                revision = source.revision if isinstance(source, hub.RepoInfo) else source
                if revision and (src, revision) in done:
                    report.ok[src] = done[(src, revision)]
                    report.resumed.append(src)
                    continue
                if isinstance(source, hub.RepoInfo):
                    adapter_dir, root = hub.download(source)
                card, warnings = stage_import(src, adapter_dir, base, staged, registry, root, revision)
                report.ok[src] = version = registry.register(card, staged)
                if revision:
                    fault("hub-import-registered")  # the crash tests: registered, not yet tagged
                    hub.tag(registry, version, src, revision)
            except (AdapterMismatch, hub.HubError) as err:
                report.rejected[src] = _one_line(str(err))
                continue
            except Exception as err:  # anything else about this one adapter: report it, import the others
                report.rejected[src] = _one_line(f"{src}: cannot import it ({type(err).__name__}: {err})")
                continue
            if warnings:
                report.warnings[src] = warnings
    return report
