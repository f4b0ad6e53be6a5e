"""`lorasoup data`: list sources and their tasks, show a task's examples."""

from __future__ import annotations

import typer

from lorasoup_core.cli._output import JSON, emit_rows

app = typer.Typer(help="Task data: list the sources or a source's tasks, show a task's examples.",
                  no_args_is_help=True)


@app.command("list")
def list_cmd(source: str = typer.Argument(None, help="A source (skills, bbh ...); omitted: list the sources."),
             path: str = typer.Option(None, help="Directory or hub id to read (default: LORASOUP_DATA_DIR/<source>)."),
             as_json: bool = JSON,
             ) -> None:
    """List the sources (with what each reads), or the tasks a source offers."""
    from lorasoup_core.data import SOURCES, DataError, list_tasks

    if source is None:
        rows = [(name, ((SOURCES.get(name).__doc__ or "").strip().splitlines() or [""])[0]) for name in SOURCES.names()]
        emit_rows(("source", "reads"), rows, as_json)
        return
    try:
        tasks = list_tasks(source, path)
    except DataError as err:
        raise typer.BadParameter(str(err), param_hint="SOURCE") from None
    emit_rows(("task",), [(t,) for t in tasks], as_json, empty=f"source {source!r} lists no tasks")


@app.command("show")
def show(spec: str = typer.Argument(..., help="source:name, e.g. skills:count_then_add or bbh:navigate."),
         n: int = typer.Option(3, "--n", min=0, help="Examples to print per split."),
         path: str = typer.Option(None, help="File, directory or hub id (default: the source's place under "
                                  "LORASOUP_DATA_DIR)."),
         seed: int = typer.Option(0, help="Seed for splitting (and for generating skills)."),
         ) -> None:
    """Split sizes, fingerprint, metric and a few formatted examples (prompt, then target) of a task."""
    from lorasoup_core.data import SPLITS, DataError, load_task, parse_spec

    try:
        task_spec = parse_spec(spec).model_copy(update={"path": path, "seed": seed})
        task = load_task(task_spec)
    except DataError as err:
        raise typer.BadParameter(str(err), param_hint="SPEC") from None
    sizes = ", ".join(f"{s}={len(task.split(s))}" for s in SPLITS)
    typer.echo(f"task: {task.name}\nsource: {task.source}\nmetric: {task.metric}\nsplits: {sizes}\n"
               f"fingerprint: {task.fingerprint}")
    for s in SPLITS:
        for i, ex in enumerate(task.split(s)[:n]):
            typer.echo(f"\n--- {s} {i} ---\n{task.prompt(ex)} {ex.target}")
