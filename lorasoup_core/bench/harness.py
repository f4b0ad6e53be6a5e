"""Benchmarks as small configs over a shared template (lm-evaluation-harness style), and the harness
that scores a base model, an adapter, or ICL prompting on them with bootstrap intervals."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoup_core.bench.generation import generate
from lorasoup_core.bench.metrics import bootstrap_ci, macro_average, pal_scores, score_all
from lorasoup_core.data import Example, Task, list_tasks, load_task
from lorasoup_core.data.skills import COMPOSED_TASKS
from lorasoup_core.models import LoadedModel
from lorasoup_core.plugins import Registry
from lorasoup_core.reporting import ResultRow

MODES = ("zero-shot", "icl", "adapter")


@dataclass(frozen=True)
class BenchmarkConfig:
    source: str  # data source
    default_tasks: tuple[str, ...] | None  # None: every task the source lists
    max_new_tokens: int = 16
    stop: tuple[str, ...] = ("\n",)
    path: str | None = None


BENCHMARKS: Registry[BenchmarkConfig] = Registry("benchmark")
BENCHMARKS.register("bbh")(BenchmarkConfig("bbh", None, max_new_tokens=24))
BENCHMARKS.register("skills")(BenchmarkConfig("skills", tuple(sorted(COMPOSED_TASKS)), max_new_tokens=16))
BENCHMARKS.register("gsm8k")(BenchmarkConfig("gsm8k", ("gsm8k",), max_new_tokens=256, stop=("\n\nQuestion:",)))
BENCHMARKS.register("gsm-hard")(BenchmarkConfig("gsm-hard", ("gsm-hard",), max_new_tokens=256,
                                                stop=("```\n", "\n\nQuestion:")))


@dataclass
class EvalReport:
    rows: list[ResultRow]
    macro: tuple[float, float, float] | None
    throughput: dict[str, float]
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@contextlib.contextmanager
def adapter_model(base: LoadedModel, adapter: str | Path | None) -> Iterator[Any]:
    """The base with a PEFT adapter loaded for the block, removed afterwards (the base stays clean)."""
    if adapter is None:
        yield base.model
        return
    from peft import PeftModel

    from lorasoup_core.storage import fetch

    path = Path(adapter)
    if "://" in str(adapter):
        import tempfile

        path = fetch(str(adapter), Path(tempfile.mkdtemp(prefix="lorasoup-adapter-")) / "adapter")
    model = PeftModel.from_pretrained(base.model, str(path)).eval()
    try:
        yield model
    finally:
        model.unload()


def icl_prompt(task: Task, example: Example, k: int, rng: random.Random) -> str:
    pool = [e for e in task.train if e.input != example.input]
    demos = rng.sample(pool, min(k, len(pool)))
    return "\n\n".join(f"{task.prompt(d)} {d.target}" for d in demos) + "\n\n" + task.prompt(example)


def evaluate_task(base: LoadedModel, task: Task, mode: str = "zero-shot", adapter: str | Path | None = None,
                  limit: int | None = None, k_shot: int = 3, exclude: dict[str, set[str]] | None = None, seed: int = 0,
                  batch_size: int = 16, method_label: str | None = None, max_new_tokens: int = 16,
                  stop: tuple[str, ...] = ("\n",), progress: bool = True) -> EvalReport:
    """Score `task`'s test split (minus `exclude`d inputs, e.g. the composition's shots)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "adapter" and adapter is None:
        raise ValueError("mode 'adapter' needs an adapter (a PEFT directory, artifact URI or NAME@ALIAS)")
    drop = (exclude or {}).get(task.name, set())
    examples = [e for e in task.test if e.input not in drop][:limit]
    if not examples:
        raise ValueError(f"task {task.name!r}: no test examples left to score")
    rng = random.Random(seed)
    prompts = [icl_prompt(task, e, k_shot, rng) if mode == "icl" else task.prompt(e) for e in examples]
    with adapter_model(base, adapter if mode == "adapter" else None) as model:
        gen = generate(base, prompts, max_new_tokens, list(stop), batch_size, model=model, progress=progress)
    targets = [e.target for e in examples]
    extra: dict[str, list[float]] = {}
    if task.metric == "pal":
        both = pal_scores(gen.texts, targets)
        scores, extra["last_number"] = both["pal"], both["last_number"]
    else:
        scores = score_all(task.metric, gen.texts, targets)
    mean, low, high = bootstrap_ci(scores, seed=seed)
    label = method_label or (mode if mode != "adapter" else Path(str(adapter)).name)
    rows = [ResultRow(task.name, label, mean, low, high, len(scores))]
    for name, values in extra.items():
        m, lo, hi = bootstrap_ci(values, seed=seed)
        rows.append(ResultRow(task.name, f"{label}/{name}", m, lo, hi, len(values)))
    preds = [{"input": e.input, "target": e.target, "prediction": p, "score": s}
             for e, p, s in zip(examples, gen.texts, scores, strict=True)]
    throughput = {"examples_per_s": gen.examples_per_s, "gen_tokens_per_s": gen.gen_tokens_per_s,
                  "prompt_tokens_per_example": gen.prompt_tokens_per_example}
    return EvalReport(rows, None, throughput, {task.name: preds})


def evaluate(base: LoadedModel, benchmark: str, tasks: str | list[str] = "all", mode: str = "zero-shot",
             adapter: str | Path | None = None, limit: int | None = None, k_shot: int = 3,
             exclude: dict[str, set[str]] | None = None, seed: int = 0, batch_size: int = 16,
             method_label: str | None = None, progress: bool = True) -> EvalReport:
    """Evaluate a benchmark's tasks; per-task rows plus the macro average with a stratified interval."""
    cfg = BENCHMARKS.get(benchmark)
    if tasks == "all":
        names = list(cfg.default_tasks or list_tasks(cfg.source, cfg.path))
    else:
        names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    rows, preds, per_task, throughput = [], {}, {}, []
    for name in names:
        task = load_task({"source": cfg.source, "name": name, "path": cfg.path, "seed": seed})
        rep = evaluate_task(base, task, mode, adapter, limit, k_shot, exclude, seed, batch_size, method_label,
                            cfg.max_new_tokens, cfg.stop, progress)
        rows += rep.rows
        preds.update(rep.predictions)
        per_task[name] = [p["score"] for p in rep.predictions[name]]
        throughput.append(rep.throughput)
    mean_tp = {k: sum(t[k] for t in throughput) / len(throughput) for k in throughput[0]}
    return EvalReport(rows, macro_average(per_task, seed=seed), mean_tp, preds)
