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


def _command_name(args: list[str]) -> str:
    """'pool train' for `lorasoup --debug pool train --config x`: the command words of the arguments."""
    import typer.main

    command, words = typer.main.get_command(app), []
    for arg in args:
        if arg.startswith("-"):
            continue  # the root's options take no value
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        command, words = sub, [*words, arg]
    return " ".join(words) or "lorasoup"


def _stopped() -> None:
    from lorasoup_core.interrupt import report_stopped

    report_stopped(_command_name(sys.argv[1:]))
    sys.exit(130)


def main() -> None:
    from lorasoup_core.interrupt import Interrupted, requested, stop_on_sigint
    from lorasoup_core.settings import bound_mlflow_waits

    bound_mlflow_waits()
    try:
        # Ctrl-C anywhere: loops in worker threads stop at their next step, and the command ends with one
        # line (typer turns KeyboardInterrupt into a silent exit 130; a stopped worker raises Interrupted)
        with stop_on_sigint():
            _load_plugins()
            app(standalone_mode=True)
    except SystemExit as done:
        if done.code == 130 and requested():
            _stopped()
        raise
    except (KeyboardInterrupt, Interrupted):
        _stopped()
    except Exception as err:  # noqa: BLE001 (expected failures exit 1/2 with their message before this)
        if _debug["on"] or os.environ.get("LORASOUP_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        tracking = sys.modules.get("lorasoup_core.tracking")  # loaded if it raised: no import for other errors
        if tracking and isinstance(err, tracking.TrackingDatabaseError):  # complete in itself: no traceback
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        # one message, its notes included (they name the target, adapter or file), no traceback
        message = "".join(traceback.format_exception_only(err)).strip()
        print(f"error: {message}\n(run `lorasoup --debug ...` or set LORASOUP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)
