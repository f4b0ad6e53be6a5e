"""Figures for MLflow: per-task score bars, learned-weight heat map, objective traces."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lorasoup_core.reporting.table import ResultRow, pivot  # noqa: E402


def plot_scores(rows: list[ResultRow], title: str = "Score by task and method"):
    """Grouped bars per task, one bar per method, with 95% interval whiskers."""
    tasks, methods, cells = pivot(rows)
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(tasks) * max(1, len(methods) / 3)), 4))
    for i, m in enumerate(methods):
        vals = [cells[(t, m)].score if (t, m) in cells else np.nan for t in tasks]
        lo = [cells[(t, m)].score - cells[(t, m)].ci_low if (t, m) in cells else 0 for t in tasks]
        hi = [cells[(t, m)].ci_high - cells[(t, m)].score if (t, m) in cells else 0 for t in tasks]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=2, label=m)
    ax.set_xticks(x, tasks, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize="small", ncols=min(len(methods), 4))
    fig.tight_layout()
    return fig


def plot_weights(weights: dict[str, dict[str, float]], title: str = "Learned weight per candidate adapter"):
    """Heat map: rows = (task, method) compositions, columns = candidate adapters."""
    row_names = list(weights)
    cols = list(dict.fromkeys(a for w in weights.values() for a in w))
    grid = np.array([[weights[r].get(c, np.nan) for c in cols] for r in row_names], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(cols) + 3), max(2.5, 0.4 * len(row_names) + 1.5)))
    bound = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(row_names)), row_names, fontsize="small")
    fig.colorbar(im, ax=ax, label="weight")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_objective_traces(traces: dict[str, list[float]], title: str = "Search objective per evaluation"):
    """One line per composition: the objective at each evaluation and its running best."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in traces.items():
        if not values:
            continue
        line, = ax.plot(values, alpha=0.35)
        ax.plot(np.minimum.accumulate(np.asarray(values, dtype=float)), color=line.get_color(), label=name)
    ax.set_xlabel("evaluation")
    ax.set_ylabel("few-shot loss + L1 penalty")
    ax.set_title(title)
    if traces:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def result_figures(rows: list[ResultRow], weights: dict[str, dict[str, float]] | None = None,
                   traces: dict[str, list[float]] | None = None) -> dict[str, plt.Figure]:
    """An experiment's figures by file name: scores, and the weights and objective traces when there are any."""
    figures = {"scores.png": plot_scores(rows)}
    if weights:
        figures["weights.png"] = plot_weights(weights)
    if traces:
        figures["objective_traces.png"] = plot_objective_traces(traces)
    return figures
