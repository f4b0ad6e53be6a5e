"""`lorasoup eval`: score a base model, an adapter or ICL prompting on a benchmark."""

from __future__ import annotations

import re

import typer


def eval_cmd(
    benchmark: str = typer.Option(..., help="bbh, skills, gsm8k or gsm-hard."),
    tasks: str = typer.Option("all", help="all, or NAME,NAME ..."),
    model: str = typer.Option("smollm2-135m", help="Base model spec."),
    adapter: str = typer.Option(None, help="PEFT directory, artifact URI, or registry NAME@ALIAS / NAME/VERSION."),
    mode: str = typer.Option("zero-shot", help="zero-shot, icl or adapter."),
    limit: int = typer.Option(None, help="Examples per task."),
    k_shot: int = typer.Option(3, help="Demonstrations for icl."),
    batch_size: int = typer.Option(16),
    device: str = typer.Option("auto"),
) -> None:
    """Per-task scores with 95% bootstrap intervals, the macro average and throughput."""
    from lorasoup_core.bench import evaluate
    from lorasoup_core.models import load_model
    from lorasoup_core.reporting import markdown_table

    if adapter and "://" not in adapter and ("@" in adapter or re.fullmatch(r"lorasoup\.[^/]+/\d+", adapter)):
        from lorasoup_core.registry import AdapterRegistry  # a registry reference, not a path

        adapter = AdapterRegistry().get(adapter).store_uri
    if adapter and mode == "zero-shot":
        mode = "adapter"
    try:
        report = evaluate(load_model(model, device=device), benchmark, tasks, mode, adapter, limit, k_shot,
                          batch_size=batch_size)
    except (KeyError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None
    typer.echo(markdown_table(report.rows))
    mean, low, high = report.macro
    typer.echo(f"\nmacro average {mean:.3f} [{low:.3f}, {high:.3f}]")
    typer.echo(" ".join(f"{k}={v:.1f}" for k, v in report.throughput.items()))
