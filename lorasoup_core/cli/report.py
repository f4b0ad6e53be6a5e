"""`lorasoup report`: analyse a finished experiment again from its published results.json."""

from __future__ import annotations

import json

import typer


def report_cmd(results: str = typer.Argument(..., help="A run's results.json: a local path or a store URI "
                                             "(…/reports/<name>/<run_id>/results.json)."),
               compare_to: list[str] = typer.Option(None, "--compare-to", help="Methods every other method is "
                                                    "compared with (paired tests); repeatable. Default: zero-shot."),
               as_json: bool = typer.Option(False, "--json", help="Print the analysis as one JSON object."),
               ) -> None:
    """Scores with intervals, the macro average, costs and paired comparisons of a finished run."""
    import fsspec

    from lorasoup_core.experiment.analysis import analyse, results_from_report

    try:
        with fsspec.open(results, "r") as f:
            doc = json.load(f)
        targets = results_from_report(doc)
    except (OSError, ValueError, KeyError) as err:
        raise typer.BadParameter(f"{results}: {err}", param_hint="RESULTS") from None
    methods = {m for res in targets for m in res.scores}
    unknown = sorted(set(compare_to or []) - methods)
    if unknown:
        raise typer.BadParameter(f"not in this run: {', '.join(unknown)}; known: {', '.join(sorted(methods))}",
                                 param_hint="--compare-to")
    analysis = analyse(targets, compare_to or (["zero-shot"] if "zero-shot" in methods else []))
    typer.echo(json.dumps(analysis.to_dict()) if as_json else analysis.markdown())
