"""``stet workbench``: the live archive in the browser, for logged-in accounts."""

from __future__ import annotations

import click

from .common import cli, db_option, errors, open_archive


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (anything but this machine: behind a TLS reverse proxy).")
@click.option("--port", default=8002, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--metadata", "metadata", type=click.Path(dir_okay=False),
              help="Datasette metadata (default ./metadata.yml, else the copy packaged with stet).")
@db_option
@errors
def workbench(host, port, metadata, db_path):
    """Serve the live archive to logged-in accounts: read, search and annotate.

    Anyone without a session gets the login page (/-/login) and nothing else.
    Restricted documents are shown to every account, marked. Annotators select
    text on a document page to annotate it; the buttons on an annotation reply,
    revise and retract as the account's role allows (stet user). The JSON API
    for tools is under /-/api/ (docs/workbench.md). Every write is signed by
    the account and is an event whose details say "via": "workbench".
    Sessions live in this process: stopping the workbench logs everyone out.

    \b
    Example:
        stet user add amina --role annotator
        stet workbench --db archive.db --port 8002
    """
    archive = open_archive(db_path)  # brings an older archive's schema up to date first
    if not archive.users():
        click.echo("Warning: the archive has no accounts yet: nobody can log in "
                   "(stet user add NAME --role archivist)", err=True)
    path = archive.path
    archive.close()
    from ..workbench import run

    run(path, host=host, port=port, metadata=metadata,
        announce=lambda message: click.echo(message, err=True))
