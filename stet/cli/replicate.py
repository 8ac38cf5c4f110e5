"""The catalog replicated by Litestream: ``stet replicate`` and ``stet restore``."""

from __future__ import annotations

import click

from .. import replicate as replication
from .common import cli, db_option, echo_json, errors, json_option


@cli.command()
@click.argument("url", required=False, metavar="[s3://BUCKET/PREFIX]")
@click.option("--once", is_flag=True,
              help="Upload what is not yet replicated, then exit (for cron or a test).")
@db_option
@errors
def replicate(url, once, db_path):
    """Replicate the archive, as it is written, to s3://BUCKET/PREFIX/catalog.

    Runs Litestream in the foreground, its log on stderr, until Ctrl-C or
    SIGTERM: it then uploads what it has not yet and exits (a second signal
    stops it at once). Without a URL, the store set with `stet store set` is
    used. Endpoint and keys come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION or the AWS configuration files. Run one
    replicate per archive, as a service (docs/replication.md); the archive
    stays usable by every other command meanwhile.

    \b
    Example:
        stet replicate s3://stet-archive/erbil
        stet replicate --once
    """
    def started(replica: str) -> None:
        if not once:
            click.echo(f"replicating {db_path} to {replica}; stop with Ctrl-C or SIGTERM",
                       err=True)

    done = replication.replicate(db_path, url, once=once, started=started)
    if once:
        click.echo(f"replicated {done['db']} to {done['replica']}")
    else:
        click.echo(f"stopped replicating {done['db']} to {done['replica']}", err=True)


@cli.command()
@click.argument("url", metavar="s3://BUCKET/PREFIX")
@click.option("--at", "timestamp", metavar="TIME",
              help="The archive as it was at this instant (ISO 8601), as far back as the "
                   "replica keeps (24 hours by default).")
@json_option
@db_option
@errors
def restore(url, timestamp, as_json, db_path):
    """Bring back the archive replicated to s3://BUCKET/PREFIX as the new file --db.

    A file already at --db is never replaced. What Litestream restores is
    written beside it under a temporary name, checked (SQLite's integrity
    check, and it must open as a stet archive) and only then named --db.
    Prints the restored chain's length and head, to compare with `stet log
    --head` on the original; run `stet verify` on it.

    \b
    Example:
        stet restore s3://stet-archive/erbil --db restored.db
        stet restore s3://stet-archive/erbil --db before.db --at 2026-11-30T09:00:00Z
    """
    done = replication.restore(url, db_path, timestamp=timestamp)
    if as_json:
        echo_json(done)
    else:
        when = f" as it was at {done['at']}" if done["at"] else ""
        click.echo(f"restored {done['replica']} to {done['db']}{when}: "
                   f"{done['length']}:{done['head']}")
