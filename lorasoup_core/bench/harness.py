"""The evaluation harness: score a base model zero-shot, with in-context demonstrations (or the official
BBH chain-of-thought prompts), or through a LoRA adapter, on a benchmark's tasks or on any Task, with
per-task and macro-average 95% intervals (Wilson for 0/1 scores, else bootstrap; see bench/stats.py) and
throughput numbers."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoup_core.adapters.kinds import FULL_WEIGHTS, full_weights
from lorasoup_core.adapters.routed import ROUTER_FILE, arrow_model
from lorasoup_core.bench.generation import GenerationResult, generate
from lorasoup_core.bench.metrics import pal_scores, score_all
from lorasoup_core.bench.stats import cell_interval, macro_interval
from lorasoup_core.bench.suites import BENCHMARKS, GENERIC, BenchmarkConfig, with_settings
from lorasoup_core.data import DataError, Example, Task, bbh_cot_prompt, list_tasks, load_task
from lorasoup_core.models import LoadedModel
from lorasoup_core.reporting import ResultRow

log = logging.getLogger(__name__)
MODES = ("zero-shot", "icl", "adapter")
ADAPTER_CONFIG = "adapter_config.json"
_REGISTRY_REF = re.compile(r"[^/@\s]+(@[^/@\s]+|/\d+)")  # NAME@ALIAS or NAME/VERSION


@dataclass
class EvalReport:
    """Per-task rows (main metric, then companion metrics as 'method/metric'), the macro average of the
    main metric as (mean, low, high), throughput totals and per-task predictions."""

    rows: list[ResultRow]
    macro: tuple[float, float, float] | None
    throughput: dict[str, float]
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, list[str]] = field(default_factory=dict)  # task -> the metric of each of its rows, in order

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "macro": self.macro, "throughput": self.throughput}


# ---------------------------------------------------------------------------------------------- adapters


def resolve_adapter(adapter: str | Path, workdir: Path) -> Path:
    """A local PEFT directory for a directory, an artifact URI (fetched) or a registry NAME@ALIAS /
    NAME/VERSION (downloaded; the registry is only imported for those)."""
    text = str(adapter)
    path = Path(text).expanduser()
    if not path.exists():
        if "://" in text:
            from lorasoup_core.storage import fetch

            path = fetch(text, workdir / "adapter")
        elif _REGISTRY_REF.fullmatch(text):
            from lorasoup_core.registry import open_registry

            registry = open_registry()
            path = registry.download(registry.get(text), workdir / "adapter")
        else:
            raise ValueError(f"adapter {text!r}: no such directory, and not an artifact URI or a registry "
                             "reference NAME@ALIAS / NAME/VERSION")
    if not any((path / f).is_file() for f in (ADAPTER_CONFIG, FULL_WEIGHTS, ROUTER_FILE)):
        raise ValueError(f"adapter {text!r}: {path} has no {ADAPTER_CONFIG} (not a PEFT adapter directory), "
                         f"no {FULL_WEIGHTS} (not a full fine-tune) and no {ROUTER_FILE} (not a routed adapter)")
    return path


def _strip_adapter_layers(model: Any) -> None:
    """Put back the plain layers a failed adapter load may have injected (the base must stay clean)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in vars(model):
            delattr(model, attr)


@contextlib.contextmanager
def _merged(model: Any, adapter: str | Path) -> Iterator[None]:
    """The adapter merged into the base weights for the block; the base's exact weights are copied back
    afterwards (PEFT's unmerge subtracts the delta again, which leaves rounding error in the shared base)."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]  # LoRA, IA3 ...
    saved = [(m.get_base_layer().weight, m.get_base_layer().weight.detach().to("cpu", copy=True)) for m in layers]
    try:
        model.merge_adapter()
    except Exception as err:  # e.g. a quantized base layer PEFT cannot merge into: evaluate unmerged
        log.warning("adapter %s not merged for evaluation (%s: %s); evaluating through the LoRA layers",
                    adapter, type(err).__name__, err)
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)
        for m in layers:
            m.merged_adapters.clear()
        yield
        return
    try:
        yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)


@contextlib.contextmanager
def adapter_model(base: LoadedModel, adapter: str | Path | None, merge: bool = False) -> Iterator[Any]:
    """The base with a PEFT adapter loaded for the block, unloaded afterwards so the shared base stays
    exactly as it was. ``merge`` folds the adapter into the base weights while the block runs (cheaper
    per forward than PEFT's extra per-layer matmuls) and restores them bit for bit; a routed adapter (Arrow)
    mixes its experts per token and always runs unmerged."""
    if adapter is None:
        yield base.model
        return
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="lorasoup-adapter-") as tmp:
        path = resolve_adapter(adapter, Path(tmp))
        _warn_on_other_base(base, path, adapter)
        if (path / FULL_WEIGHTS).is_file():  # a full fine-tune: its weights swapped in, the base's copied back
            with full_weights(base, path) as model:
                yield model
            return
        if (path / ROUTER_FILE).is_file():
            with _routed(base, path, adapter) as model:
                yield model
            return
        try:
            model = PeftModel.from_pretrained(base.model, str(path), is_trainable=False).eval()
        except Exception as err:  # shape or module mismatch: say which adapter and which base
            _strip_adapter_layers(base.model)
            raise ValueError(f"adapter {str(adapter)!r} cannot be loaded onto base {base.spec!r}: "
                             f"{type(err).__name__}: {err}") from None
        try:
            with _merged(model, adapter) if merge else contextlib.nullcontext():
                yield model
        finally:
            model.unload()  # swaps the base layers back in (no unmerge: _merged restored their weights)
            _strip_adapter_layers(base.model)


@contextlib.contextmanager
def _routed(base: LoadedModel, path: Path, adapter: str | Path) -> Iterator[Any]:
    """PEFT's Arrow model over a routed adapter's experts for the block; the plain layers put back after."""
    try:
        model = arrow_model(base.model, path).eval()
    except Exception as err:
        _strip_adapter_layers(base.model)
        raise ValueError(f"adapter {str(adapter)!r} cannot be loaded onto base {base.spec!r}: {err}") from None
    try:
        yield model
    finally:
        model.unload()
        _strip_adapter_layers(base.model)


def _warn_on_other_base(base: LoadedModel, path: Path, adapter: str | Path) -> None:
    from lorasoup_core.adapters import CARD_FILE, AdapterCard

    if (path / CARD_FILE).is_file():
        card = AdapterCard.read(path)
        if card.base_fingerprint and card.base_fingerprint != base.fingerprint:
            log.warning("adapter %s was made on base %s (fingerprint %s), evaluated on %s (%s)", adapter,
                        card.base_model, card.base_fingerprint[:12], base.spec, base.fingerprint[:12])


# ---------------------------------------------------------------------------------------------- prompts


def icl_prompt(config: BenchmarkConfig, task: Task, example: Example, k: int, rng: random.Random) -> str:
    """k seeded demonstrations from the train split (never the evaluated example), then the query."""
    pool = [e for e in task.train if e.input != example.input]
    demos = rng.sample(pool, min(k, len(pool)))
    parts = [config.demonstration(task, d) for d in demos] + [config.prompt(task, example)]
    return config.demo_separator.join(parts)


def cot_query(cot_prompt: str, example: Example) -> str:
    """The official BBH CoT format: the 3 worked examples, then 'Q: ... A: Let's think step by step.'"""
    return f"{cot_prompt}\n\nQ: {example.input}\nA: Let's think step by step.\n"


def shared_demonstrations(config: BenchmarkConfig, task: Task, examples: list[Example], k: int, seed: int) -> str:
    """One seeded draw of k train demonstrations for all ``examples`` (none of them is drawn), joined
    into the prompt prefix every query shares."""
    evaluated = {e.input for e in examples}
    pool = [e for e in task.train if e.input not in evaluated]
    demos = random.Random(f"{seed}:{task.name}:shared").sample(pool, min(k, len(pool)))
    return "".join(config.demonstration(task, d) + config.demo_separator for d in demos)


def _prompts(config: BenchmarkConfig, task: Task, examples: list[Example], mode: str, k_shot: int, seed: int,
             cot_prompt: str | None) -> list[str]:
    if cot_prompt is not None:
        return [cot_query(cot_prompt, e) for e in examples]
    if mode == "icl" and config.icl_demos == "shared":
        head = shared_demonstrations(config, task, examples, k_shot, seed)
        return [head + config.prompt(task, e) for e in examples]
    if mode == "icl":
        rng = random.Random(f"{seed}:{task.name}")
        return [icl_prompt(config, task, e, k_shot, rng) for e in examples]
    return [config.prompt(task, e) for e in examples]


# ---------------------------------------------------------------------------------------------- scoring


def metrics_for(config: BenchmarkConfig, task: Task) -> tuple[str, tuple[str, ...]]:
    """The main metric and the companion metrics reported beside it."""
    metric = config.metric or task.metric
    return metric, config.extra_metrics or (("last_number",) if metric == "pal" else ())


def score_predictions(config: BenchmarkConfig, task: Task, predictions: list[str],
                      targets: list[str]) -> dict[str, list[float]]:
    """Per-example scores of every metric the harness reports for ``task`` (the harness's only scoring
    path; the gold-target tests go through it too). The main metric reads answers through the config's
    extractor when it names one; companions through their own."""
    metric, extras = metrics_for(config, task)
    per_metric: dict[str, list[float]] = {}
    if metric == "pal":  # one concurrent sandbox pass scores both PAL and the last number
        per_metric = pal_scores(predictions, targets, extract=config.extract)
    for name in (metric, *extras):
        if name not in per_metric:
            per_metric[name] = score_all(name, predictions, targets, config.extract if name == metric else None)
    return per_metric


def _check_mode(mode: str, adapter: str | Path | None, cot: bool) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "adapter" and adapter is None:
        raise ValueError("mode 'adapter' needs an adapter (a PEFT directory, artifact URI or NAME@ALIAS)")
    if cot and mode != "icl":
        raise ValueError("the chain-of-thought prompts are in-context demonstrations: use them with mode 'icl'")


def _score_task(base: LoadedModel, model: Any, task: Task, config: BenchmarkConfig, mode: str, label: str,
                limit: int | None, k_shot: int, exclude: dict[str, set[str]] | None, seed: int, batch_size: int,
                cot_prompt: str | None, progress: bool) -> tuple[list[ResultRow], list[dict[str, Any]],
                                                                  list[float], GenerationResult]:
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    drop = (exclude or {}).get(task.name, set())
    examples = [e for e in task.split(config.split) if e.input not in drop][:limit]
    if not examples:
        raise DataError(f"task {task.name!r} ({task.source or 'no source'}): no {config.split} examples left "
                        f"to score{' after excluding ' + str(len(drop)) + ' inputs' if drop else ''}")
    prompts = _prompts(config, task, examples, mode, k_shot, seed, cot_prompt)
    cot = cot_prompt is not None
    max_new = config.cot_max_new_tokens if cot and config.cot_max_new_tokens else config.max_new_tokens
    stop = config.cot_stop if cot else config.stop
    gen = generate(base, prompts, max_new, list(stop), batch_size, model=model, progress=progress,
                   prefix_cache=config.prefix_cache, max_batch_tokens=config.max_batch_tokens)
    metric, extras = metrics_for(config, task)
    per_metric = score_predictions(config, task, gen.texts, [e.target for e in examples])
    choices = _choices(base, model, task, config, prompts, batch_size) if config.multiple_choice else None
    if choices is not None:
        extras = (*extras, "mc")
        per_metric["mc"] = [float(c == e.target.strip()) for c, e in zip(choices, examples, strict=True)]
    rows = []
    for name in (metric, *extras):
        mean, low, high = cell_interval([per_metric[name]], seed=seed)
        method = label if name == metric else f"{label}/{name}"
        rows.append(ResultRow(task.name, method, mean, low, high, len(examples)))
    preds = [{"input": e.input, "target": e.target, "prompt": p, "prediction": t, "score": s,
              **{name: per_metric[name][i] for name in extras}, **({"choice": choices[i]} if choices else {})}
             for i, (e, p, t, s) in enumerate(zip(examples, prompts, gen.texts, per_metric[metric], strict=True))]
    return rows, preds, per_metric[metric], gen


def _choices(base: LoadedModel, model: Any, task: Task, config: BenchmarkConfig, prompts: list[str],
             batch_size: int) -> list[str] | None:
    """The best option per prompt by log-likelihood, where the task's answer set is closed."""
    from lorasoup_core.bench.choice import choose, closed_answer_set

    options = closed_answer_set(task)
    if options is None:
        log.info("task %s: open answer set, no multiple-choice score", task.name)
        return None
    return choose(base, prompts, options, model=model, batch_size=batch_size, max_batch_tokens=config.max_batch_tokens)


def _row_metrics(config: BenchmarkConfig, task: Task, rows: list[ResultRow]) -> list[str]:
    """The metric each of a task's rows reports: the main one, then the companions (`mc` last, when scored)."""
    metric, extras = metrics_for(config, task)
    return [metric, *extras, "mc"][: len(rows)]


def _label(mode: str, adapter: str | Path | None, cot: bool, method_label: str | None) -> str:
    if method_label:
        return method_label
    if mode == "adapter":
        return Path(str(adapter).rstrip("/")).name or str(adapter)
    return "cot" if cot else mode


def evaluate_task(base: LoadedModel, task: Task, mode: str = "zero-shot", adapter: str | Path | None = None,
                  limit: int | None = None, k_shot: int = 3, exclude: dict[str, set[str]] | None = None,
                  seed: int = 0, batch_size: int = 64, method_label: str | None = None, *,
                  benchmark: str | BenchmarkConfig | None = None, cot_prompt: str | None = None,
                  progress: bool = True) -> EvalReport:
    """Score any Task's test split (minus the ``exclude``d inputs, e.g. a composition's few-shot examples).

    ``benchmark`` picks the generation/metric settings (default: 16 new tokens, stop at a newline, the
    task's own metric); ``cot_prompt`` replaces sampled demonstrations in mode 'icl'.
    """
    _check_mode(mode, adapter, cot_prompt is not None)
    config = BENCHMARKS.get(benchmark) if isinstance(benchmark, str) else benchmark or GENERIC
    label = _label(mode, adapter, cot_prompt is not None, method_label)
    with adapter_model(base, adapter if mode == "adapter" else None, merge=config.merge_adapter) as model:
        rows, preds, scores, gen = _score_task(base, model, task, config, mode, label, limit, k_shot, exclude,
                                               seed, batch_size, cot_prompt, progress)
    return EvalReport(rows, cell_interval([scores], seed=seed), GenerationResult.combine([gen]), {task.name: preds},
                      {task.name: _row_metrics(config, task, rows)})


def benchmark_tasks(benchmark: str, tasks: str | list[str] = "all", path: str | None = None) -> list[str]:
    """The task names ``tasks`` stands for ('all' = the benchmark's default set), checked to exist."""
    config = BENCHMARKS.get(benchmark)
    path = path or config.path
    if tasks == "all":
        return list(config.default_tasks or list_tasks(config.source, path))
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise ValueError(f"no task names in {tasks!r}")
    try:
        known = list_tasks(config.source, path)
    except DataError:  # e.g. a hub mirror while offline: loading each task will say what is wrong
        return names
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(f"unknown {benchmark} task(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return names


def evaluate_benchmark(base: LoadedModel, benchmark: str, tasks: str | list[str] = "all", mode: str = "zero-shot",
             adapter: str | Path | None = None, limit: int | None = None, k_shot: int = 3,
             exclude: dict[str, set[str]] | None = None, seed: int = 0, batch_size: int = 64,
             method_label: str | None = None, *, cot: bool = False, path: str | None = None,
             progress: bool = True, settings: dict[str, Any] | None = None) -> EvalReport:
    """Evaluate a benchmark's tasks: per-task rows, the macro average with its interval (tasks fixed,
    examples sampled), and throughput totals. ``cot`` uses the official BBH 3-shot chain-of-thought prompts;
    ``settings`` overrides BenchmarkConfig fields (e.g. multiple_choice, icl_demos, max_batch_tokens)."""
    config = with_settings(BENCHMARKS.get(benchmark), settings)
    _check_mode(mode, adapter, cot)
    if cot and not config.cot_max_new_tokens:
        raise ValueError(f"benchmark {benchmark!r} has no chain-of-thought prompts")
    path = path or config.path
    names = benchmark_tasks(benchmark, tasks, path)
    loaded = [load_task({"source": config.source, "name": n, "path": path, "seed": seed}) for n in names]
    label = _label(mode, adapter, cot, method_label)
    rows, preds, per_task, gens, metrics = [], {}, {}, [], {}
    with adapter_model(base, adapter if mode == "adapter" else None, merge=config.merge_adapter) as model:
        for task in loaded:
            cot_prompt = bbh_cot_prompt(task.name, path) if cot else None
            task_rows, preds[task.name], per_task[task.name], gen = _score_task(
                base, model, task, config, mode, label, limit, k_shot, exclude, seed, batch_size, cot_prompt,
                progress)
            rows += task_rows
            gens.append(gen)
            metrics[task.name] = _row_metrics(config, task, task_rows)
    return EvalReport(rows, macro_interval({t: [v] for t, v in per_task.items()}, seed=seed),
                      GenerationResult.combine(gens), preds, metrics)
