"""The results table: one row per (target task, method), pivoted to task x method for reading."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ResultRow:
    """One evaluated (task, method) cell: the score with its bootstrap 95% interval."""

    task: str
    method: str  # composer name, or a baseline: zero-shot, icl, datamix
    score: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def pivot(rows: list[ResultRow]) -> tuple[list[str], list[str], dict[tuple[str, str], ResultRow]]:
    """(tasks, methods, {(task, method): row}), tasks and methods in first-seen order."""
    tasks = list(dict.fromkeys(r.task for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    return tasks, methods, {(r.task, r.method): r for r in rows}


def macro(rows: list[ResultRow]) -> dict[str, float]:
    """Mean over tasks of each method's score."""
    by_method: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_method[r.method].append(r.score)
    return {m: sum(v) / len(v) for m, v in by_method.items()}


def markdown_table(rows: list[ResultRow], percent: bool = True, macro_rows: list[ResultRow] | None = None) -> str:
    """Task x method table, each cell 'score [low, high]', with a macro-average row (from `macro_rows`, with
    their intervals, when given; else the plain mean over tasks)."""
    tasks, methods, cells = pivot(rows)
    scale = 100.0 if percent else 1.0

    def fmt(r: ResultRow | None) -> str:
        if r is None:
            return "–"
        return f"{r.score * scale:.1f} [{r.ci_low * scale:.1f}, {r.ci_high * scale:.1f}]"

    lines = ["| task | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(fmt(cells.get((t, m))) for m in methods) + " |")
    if macro_rows is not None:
        by_method = {r.method: r for r in macro_rows}
        lines.append("| **macro** | " + " | ".join(f"**{fmt(by_method.get(m))}**" for m in methods) + " |")
    else:
        averages = macro(rows)
        lines.append("| **macro** | " + " | ".join(f"**{averages[m] * scale:.1f}**" for m in methods) + " |")
    return "\n".join(lines)


def table_columns(rows: list[ResultRow]) -> dict[str, list]:
    """Column-oriented form for mlflow.log_table."""
    keys = ["task", "method", "score", "ci_low", "ci_high", "n"]
    return {k: [getattr(r, k) for r in rows] for k in keys}
