import matplotlib.figure

from lorasoup_core.reporting import (
    ResultRow,
    markdown_table,
    plot_objective_traces,
    plot_scores,
    plot_weights,
)
from lorasoup_core.reporting.table import macro, table_columns

ROWS = [
    ResultRow("count_then_add", "lorahub", 0.5, 0.3, 0.7, 20),
    ResultRow("count_then_add", "zero-shot", 0.1, 0.0, 0.25, 20),
    ResultRow("sort_then_first", "lorahub", 0.9, 0.8, 1.0, 20),
]


def test_markdown_table_pivots_with_intervals_and_macro_row():
    table = markdown_table(ROWS)
    lines = table.splitlines()
    assert lines[0] == "| task | lorahub | zero-shot |"
    assert "| count_then_add | 50.0 [30.0, 70.0] | 10.0 [0.0, 25.0] |" in lines
    assert "| sort_then_first | 90.0 [80.0, 100.0] | – |" in lines  # missing cell is shown, not invented
    assert lines[-1] == "| **macro** | **70.0** | **10.0** |"
    assert macro(ROWS) == {"lorahub": 0.7, "zero-shot": 0.1}
    assert table_columns(ROWS)["method"] == ["lorahub", "zero-shot", "lorahub"]


def test_plots_draw_every_series():
    fig = plot_scores(ROWS)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes[0].patches) == 4  # 2 tasks x 2 methods bars (missing one drawn as NaN)
    heat = plot_weights({"count_then_add/lorahub": {"add": 1.2, "count": 0.8, "sort": -0.1}})
    assert heat.axes[0].images[0].get_array().shape == (1, 3)
    traces = plot_objective_traces({"a": [3.0, 2.0, 2.5, 1.0]})
    best = traces.axes[0].lines[1].get_ydata()
    assert list(best) == [3.0, 2.0, 2.0, 1.0]  # running best never goes up
