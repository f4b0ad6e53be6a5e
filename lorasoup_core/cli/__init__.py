"""The `lorasoup` command line (typer). Library commands live here; commands that need Prefect
(pipeline runs, deployments) are contributed by the `flows` package through the
`lorasoup.commands` entry-point group, so this package never imports Prefect."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import traceback

import typer

from lorasoup_core.cli import compose as compose_cli
from lorasoup_core.cli import data as data_cli
from lorasoup_core.cli import eval as eval_cli
from lorasoup_core.cli import models as models_cli
from lorasoup_core.cli import pool as pool_cli
from lorasoup_core.cli import report as report_cli
from lorasoup_core.cli import store as store_cli

app = typer.Typer(
    name="lorasoup",
    help="Compose LoRA adapters: train a pool, register it in MLflow, compose for new tasks, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(models_cli.app, name="models")
app.add_typer(store_cli.app, name="store")
app.add_typer(data_cli.app, name="data")
app.add_typer(pool_cli.app, name="pool")
app.command("eval")(eval_cli.eval_cmd)
app.command("compose")(compose_cli.compose_cmd)
app.command("report")(report_cli.report_cmd)


_debug = {"on": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", envvar="LORASOUP_DEBUG",
                                     help="Show the full traceback of an unexpected error.")) -> None:
    """Compose LoRA adapters: train a pool, register it in MLflow, compose for new tasks, evaluate."""
    _debug["on"] = debug


def _load_plugins() -> None:
    for ep in importlib.metadata.entry_points(group="lorasoup.commands"):
        ep.load()(app)


def main() -> None:
    _load_plugins()
    try:
        app(standalone_mode=True)
    except Exception as err:  # noqa: BLE001 (expected failures exit 1/2 with their message before this)
        if _debug["on"] or os.environ.get("LORASOUP_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        # one message, its notes included (they name the target, adapter or file), no traceback
        message = "".join(traceback.format_exception_only(err)).strip()
        print(f"error: {message}\n(run `lorasoup --debug ...` or set LORASOUP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)
