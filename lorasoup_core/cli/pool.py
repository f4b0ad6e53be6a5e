"""`lorasoup pool`: the registered adapters (`pool train` comes with the pipeline commands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The adapter pool in the MLflow registry.", no_args_is_help=True)


@app.command("list")
def list_cmd(task: str = typer.Option(None), base: str = typer.Option(None, help="Base model spec."),
             rank: int = typer.Option(None), origin: str = typer.Option(None, help="trained, imported or composed."),
             ) -> None:
    """Registered adapter versions with their tags."""
    from lorasoup_core.registry import AdapterRegistry

    versions = AdapterRegistry().list(task=task, base_model=base, rank=rank, origin=origin)
    typer.echo(f"{'name':45} {'ver':>3} {'task':20} {'rank':>4} {'val_loss':>8}  aliases  uri")
    for v in versions:
        loss = v.metrics.get("val_loss")
        typer.echo(f"{v.name:45} {v.version:>3} {v.task:20} {v.rank:>4} "
                   f"{'' if loss is None else f'{loss:.3f}':>8}  {','.join(v.aliases):7}  {v.store_uri}")
