"""`lorasoup store`: look into and tidy the artifact store."""

from __future__ import annotations

import typer

app = typer.Typer(help="Artifact store (file://, s3://, memory://): list, fetch, publish, clean.",
                  no_args_is_help=True)

URI = typer.Option(None, "--uri", help="Store root URI; default LORASOUP_STORE or file://~/.lorasoup/artifacts.")


def _store(uri: str | None):
    from lorasoup_core.storage import StoreError, open_store

    try:
        return open_store(uri)
    except (StoreError, KeyError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command("ls")
def ls(prefix: str = typer.Argument("", help="Key prefix, e.g. adapters/"), uri: str | None = URI) -> None:
    """List committed artifacts with size and sha256."""
    store = _store(uri)
    for key in store.list(prefix):
        art = store.manifest(key)
        typer.echo(f"{key}\t{art.size}\t{art.sha256[:12]}\t{art.created}")


@app.command("publish")
def publish(directory: str = typer.Argument(..., help="Local directory to publish."),
            key: str = typer.Argument(..., help="Key under the store root."), uri: str | None = URI) -> None:
    """Publish a directory atomically (no-op if the same content is there already)."""
    from lorasoup_core.storage import StoreError

    try:
        art = _store(uri).publish(directory, key)
    except StoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{art.uri}\tsha256={art.sha256}")


@app.command("get")
def get(artifact_uri: str = typer.Argument(..., help="URI of a committed artifact."),
        dest: str = typer.Argument(..., help="Local directory to create.")) -> None:
    """Download a committed artifact, verifying each file's sha256."""
    from lorasoup_core.storage import StoreError, fetch

    try:
        typer.echo(fetch(artifact_uri, dest))
    except StoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command("clean")
def clean(uri: str | None = URI, dry_run: bool = typer.Option(False, help="Only list what would go.")) -> None:
    """Remove leftovers of interrupted publishes (never committed artifacts)."""
    store = _store(uri)
    leftovers = store.uncommitted() if dry_run else store.clean_uncommitted()
    for rel in leftovers:
        typer.echo(rel)
    typer.echo(f"{len(leftovers)} leftover(s) {'found' if dry_run else 'removed'}")
