"""What an experiment's results say: per (task, method) the mean over seeds with its interval, the macro
average with its interval, the inference cost of each method, and paired comparisons between methods on
the same examples (statistics in `lorasoup_core.bench.stats`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lorasoup_core.bench.stats import Comparison, cell_interval, macro_interval, paired_comparison
from lorasoup_core.experiment.results import TargetResult
from lorasoup_core.reporting import ResultRow, markdown_table


@dataclass(frozen=True)
class MethodCost:
    """What a method costs per test example at inference, and per target to compose."""

    method: str
    prompt_tokens_per_example: float
    eval_seconds_per_example: float
    compose_seconds: float | None  # mean over (target, seed); None for baselines that compose nothing
    examples: int
    trainable_params: float | None = None  # what the fit trains, mean over (target, seed); None: nothing fitted

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Analysis:
    seeds: list[int]
    rows: list[ResultRow]  # per (task, method): mean over seeds, interval over examples and seeds
    macro: list[ResultRow]  # task "macro": mean over tasks, with its interval
    best: list[ResultRow]  # per (task, method): the best seed's own row
    costs: list[MethodCost] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "rows": [r.to_dict() for r in self.rows],
                "macro": [r.to_dict() for r in self.macro], "best_seed_rows": [r.to_dict() for r in self.best],
                "costs": [c.to_dict() for c in self.costs], "comparisons": [c.to_dict() for c in self.comparisons]}

    def markdown(self) -> str:
        several = len(self.seeds) > 1
        head = (f"Mean over seeds {self.seeds} (95% intervals over examples and seeds; Wilson for 0/1 scores)"
                if several else "Scores (95% intervals; Wilson for 0/1 scores)")
        parts = [head, markdown_table(self.rows, macro_rows=self.macro), "Cost per test example",
                 cost_table(self.costs)]
        if self.comparisons:
            parts += ["Paired comparisons on the same examples (macro difference in points, a - b)",
                      comparison_table(self.comparisons)]
        if several:
            parts += ["Best seed", markdown_table(self.best)]
        return "\n\n".join(parts)


def cost_table(costs: list[MethodCost]) -> str:
    lines = ["| method | prompt tokens | eval s | compose s / target | trained parameters |", "|---|---|---|---|---|"]
    for c in costs:
        compose = "–" if c.compose_seconds is None else f"{c.compose_seconds:.1f}"
        trained = "–" if c.trainable_params is None else f"{c.trainable_params:,.0f}"
        lines.append(f"| {c.method} | {c.prompt_tokens_per_example:.1f} | {c.eval_seconds_per_example:.3f} "
                     f"| {compose} | {trained} |")
    return "\n".join(lines)


def comparison_table(comparisons: list[Comparison]) -> str:
    lines = ["| a | b | Δ | 95% CI | p | test | wins / losses |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c.method} | {c.reference} | {100 * c.delta:+.1f} | [{100 * c.ci_low:+.1f}, "
                     f"{100 * c.ci_high:+.1f}] | {c.p_value:.3g} | {c.test} | {c.wins} / {c.losses} |")
    return "\n".join(lines)


def _per_seed(results: list[TargetResult]) -> dict[tuple[str, str], dict[int, tuple[ResultRow, list[float]]]]:
    cells: dict[tuple[str, str], dict[int, tuple[ResultRow, list[float]]]] = {}
    for res in results:
        for row in res.rows:
            cells.setdefault((row.task, row.method), {})[res.seed] = (row, res.scores.get(row.method, []))
    return cells


def _costs(results: list[TargetResult], methods: list[str]) -> list[MethodCost]:
    out = []
    for m in methods:
        runs = [res.throughput[m] for res in results if m in res.throughput]
        examples = sum(r.get("examples", 0.0) for r in runs)
        if not examples:
            continue
        composed = [r["compose_seconds"] for r in runs if "compose_seconds" in r]
        trained = [r["trainable_params"] for r in runs if "trainable_params" in r]
        out.append(MethodCost(
            m, sum(r.get("prompt_tokens_per_example", 0.0) * r.get("examples", 0.0) for r in runs) / examples,
            sum(r.get("seconds", 0.0) for r in runs) / examples,
            sum(composed) / len(composed) if composed else None, int(examples),
            sum(trained) / len(trained) if trained else None))
    return out


def analyse(results: list[TargetResult], compare_to: list[str] | None = None) -> Analysis:
    """The analysis of one experiment's results (every target, method and seed)."""
    cells = _per_seed(results)
    seeds = sorted({res.seed for res in results})
    rows, best = [], []
    scores: dict[str, dict[str, list[list[float]]]] = {}  # method -> task -> per-seed scores
    for (task, method), by_seed in cells.items():
        runs = [by_seed[s] for s in sorted(by_seed)]
        best.append(max((r for r, _ in runs), key=lambda r: r.score))
        if not all(sc for _, sc in runs):  # scores not kept (older results): the evaluation's own row
            rows.append(runs[0][0])
            continue
        mean, low, high = cell_interval([sc for _, sc in runs])
        rows.append(ResultRow(task, method, mean, low, high, sum(len(sc) for _, sc in runs)))
        scores.setdefault(method, {})[task] = [sc for _, sc in runs]
    methods = list(dict.fromkeys(r.method for r in rows))
    macro = [ResultRow("macro", m, *macro_interval(scores[m]), sum(len(s) * len(s[0]) for s in scores[m].values()))
             for m in methods if m in scores]
    comparisons = []
    for ref in compare_to or []:
        if ref not in scores:
            continue
        # a companion metric ('method/mc') is compared only with the same metric of the reference
        comparisons += [paired_comparison(scores[m], scores[ref], m, ref) for m in methods
                        if m != ref and m in scores and set(scores[m]) & set(scores[ref])
                        and m.partition("/")[2] == ref.partition("/")[2]]
    return Analysis(seeds, rows, macro, best, _costs(results, methods), comparisons)


def results_from_report(doc: dict[str, Any]) -> list[TargetResult]:
    """The per-(target, seed) results a published `results.json` holds (rows, per-example scores,
    throughput), to analyse a finished run again, e.g. against other methods."""
    if "scores" not in doc:
        raise ValueError("this results.json has no per-example scores (written before they were kept): "
                         "re-run the experiment (its cells come from the cache) to publish them")
    seeds = doc.get("seeds") or [0]
    out = []
    for cell, scores in doc["scores"].items():
        target, _, at = cell.partition("@")
        seed = int(at) if at else seeds[0]
        rows = [ResultRow(**{k: v for k, v in r.items() if k != "seed"}) for r in doc["rows_per_seed"]
                if r["task"] == target and r.get("seed", seed) == seed]
        out.append(TargetResult(target, "", rows, seed=seed, scores=scores,
                                throughput=doc.get("throughput", {}).get(cell, {})))
    return out
