"""Results of an experiment as people read them: a task x method table with intervals, plots,
and their logging to MLflow."""

from lorasoup_core.reporting.plots import plot_objective_traces, plot_scores, plot_weights, result_figures
from lorasoup_core.reporting.table import ResultRow, markdown_table, pivot

__all__ = ["ResultRow", "markdown_table", "pivot", "plot_objective_traces", "plot_scores", "plot_weights", "result_figures"]
