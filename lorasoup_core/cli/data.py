"""`lorasoup data`: list and inspect tasks from any source."""

from __future__ import annotations

import typer

app = typer.Typer(help="Task data: list tasks of a source, show a task's examples.", no_args_is_help=True)


@app.command("list")
def list_cmd(source: str = typer.Argument(None, help="A source (skills, bbh ...); omitted: list the sources."),
             path: str = typer.Option(None, help="Directory to read (default: LORASOUP_DATA_DIR).")) -> None:
    """List the sources, or the tasks a source offers."""
    from lorasoup_core.data import SOURCES, DataError, list_tasks

    if source is None:
        typer.echo("\n".join(SOURCES.names()))
        return
    try:
        typer.echo("\n".join(list_tasks(source, path)))
    except (DataError, KeyError) as err:
        raise typer.BadParameter(str(err)) from None


@app.command("show")
def show(spec: str = typer.Argument(..., help="source:name, e.g. skills:count_then_add or bbh:navigate."),
         n: int = typer.Option(3, "--n", help="Examples to print per split.")) -> None:
    """Split sizes, fingerprint and a few formatted examples of a task."""
    from lorasoup_core.data import SPLITS, DataError, load_task

    try:
        task = load_task(spec)
    except (DataError, KeyError) as err:
        raise typer.BadParameter(str(err)) from None
    typer.echo(f"{task.name}  metric={task.metric}  fingerprint={task.fingerprint[:16]}  source={task.source}")
    for s in SPLITS:
        examples = task.split(s)
        typer.echo(f"\n[{s}: {len(examples)} examples]")
        for ex in examples[:n]:
            typer.echo(f"{task.prompt(ex)} {ex.target}\n")
