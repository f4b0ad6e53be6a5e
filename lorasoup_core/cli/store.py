"""`lorasoup store`: look into and tidy the artifact store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from lorasoup_core.cli._output import JSON, emit_rows

app = typer.Typer(help="Artifact store (file://, s3://, memory://): list, fetch, publish, clean.",
                  no_args_is_help=True)

URI = typer.Option(None, "--store", "--uri", help="Store root URI; default LORASOUP_STORE or "
                   "file://~/.lorasoup/artifacts.")
T = TypeVar("T")


def _run(action: Callable[[], T], config_errors: bool = False) -> T:
    """One line on stderr and exit 2 for the errors a user can act on (missing bucket, unsafe
    destination, ...; with ``config_errors`` also an unknown scheme or bad setting), not a traceback."""
    from lorasoup_core.storage import StoreError

    expected = (StoreError, KeyError, ValueError) if config_errors else (StoreError,)
    try:
        return action()
    except expected as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def _store(uri: str | None):
    from lorasoup_core.storage import open_store

    return _run(lambda: open_store(uri), config_errors=True)


@app.command("ls")
def ls(prefix: str = typer.Argument("", help="Key prefix, e.g. adapters/"), uri: str | None = URI,
       as_json: bool = JSON) -> None:
    """List committed artifacts: key, size in bytes, sha256, files, created."""
    store = _store(uri)
    rows = []
    for key in _run(lambda: store.list(prefix)):
        art = _run(lambda: store.manifest(key))  # noqa: B023 - called at once
        rows.append((key, art.size, art.sha256 if as_json else art.sha256[:12], len(art.files), art.created))
    emit_rows(("key", "size", "sha256", "files", "created"), rows, as_json, empty="no committed artifacts")


@app.command("publish")
def publish(directory: str = typer.Argument(..., help="Local directory to publish."),
            key: str = typer.Argument(..., help="Key under the store root."), uri: str | None = URI) -> None:
    """Publish a directory atomically (no-op if the same content is there already)."""
    store = _store(uri)
    art = _run(lambda: store.publish(directory, key))
    typer.echo(f"{art.uri}\tsha256={art.sha256}")


@app.command("get")
def get(artifact_uri: str = typer.Argument(..., help="URI of a committed artifact."),
        dest: str = typer.Argument(..., help="Local directory to create (or an empty one to fill).")) -> None:
    """Download a committed artifact, verifying each file's sha256. Refuses a DEST that holds anything."""
    from lorasoup_core.storage import fetch

    typer.echo(_run(lambda: fetch(artifact_uri, dest)))


@app.command("clean")
def clean(uri: str | None = URI, dry_run: bool = typer.Option(False, help="Only list what would go."),
          min_age: float = typer.Option(None, min=0, help="Only leftovers older than this many minutes (default "
                                        "LORASOUP_CLEAN_MIN_AGE, 60): younger ones may be a publish in progress.")
          ) -> None:
    """Remove leftovers of interrupted publishes, as the store's journal records them (never committed
    artifacts, never young uploads, never a file the store did not write)."""
    store = _store(uri)
    age = None if min_age is None else min_age * 60
    leftovers = _run(lambda: store.uncommitted(min_age_s=age) if dry_run else store.clean_uncommitted(min_age_s=age))
    for rel in leftovers:
        typer.echo(rel)
    typer.echo(f"{len(leftovers)} leftover(s) {'found' if dry_run else 'removed'}")


@app.command("adopt")
def adopt(uri: str | None = URI) -> None:
    """Mark a store made by a lorasoup older than the store marker (it holds committed artifacts), so
    ls/clean/publish use it. A directory without committed artifacts is refused."""
    store = _store(uri)
    keys = _run(store.adopt)
    for key in keys:
        typer.echo(key)
    typer.echo(f"{store.uri}: a lorasoup store with {len(keys)} committed artifact(s)")
