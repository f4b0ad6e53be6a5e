"""What list commands print: a rich table for people, or with --json one JSON array of objects (one per
row, the same columns with typed values) for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer

JSON = typer.Option(False, "--json", help="Print one JSON array instead of a table.")


def emit_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], as_json: bool, empty: str = "nothing found",
              title: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str))
        return
    if not rows:
        typer.echo(empty)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for row in rows:
        table.add_row(*("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    # piped output keeps whole cells (rich would wrap to 80 columns); --json is the format for scripts
    Console(width=None if sys.stdout.isatty() else 250).print(table)
