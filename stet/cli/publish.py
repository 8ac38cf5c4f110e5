"""Commands that publish the archive: serve (Datasette, read-only) and publish (a snapshot)."""

from __future__ import annotations

import math

import click

from .common import (by_option, cli, db_option, echo_json, errors, json_option, open_archive,
                     progress, silent_option, user)


def _number_of(unit):
    def check(ctx, param, value):
        """A number of ``unit``; the error names where it came from (the option or the variable)."""
        try:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return max(0.0, number)
        except ValueError:
            source = ctx.get_parameter_source(param.name)
            where = (param.envvar if source is click.core.ParameterSource.ENVIRONMENT
                     else param.opts[0])
            raise click.ClickException(f"{where}={value!r}: give a number of {unit}") from None

    return check


_megabytes = _number_of("megabytes")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--metadata", "metadata", type=click.Path(dir_okay=False),
              help="Datasette metadata (default ./metadata.yml, else the copy packaged with stet).")
@click.option("--cache-mb", envvar="STET_SERVE_CACHE_MB", default="128", show_default=True,
              callback=_megabytes, metavar="MB",
              help="Megabytes of answers kept in memory ($STET_SERVE_CACHE_MB; 0: none).")
@click.option("--check-every", envvar="STET_SERVE_CHECK_EVERY", default="5", show_default=True,
              callback=_number_of("seconds"), metavar="SECONDS",
              help="Look for changes to the archive this often ($STET_SERVE_CHECK_EVERY; "
                   "0: only on SIGHUP).")
@click.option("--from", "from_url", metavar="s3://BUCKET/PREFIX",
              help="Serve the snapshots `stet publish` uploaded there, not an archive "
                   "(a public read replica; not with --db).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="With --from: where downloaded snapshots are kept "
                   "(default ~/.cache/stet/replicas/BUCKET-HASH).")
@db_option
@errors
def serve(host, port, metadata, cache_mb, check_every, from_url, cache_dir, db_path):
    """Serve the archive with Datasette, read-only, as the database `archive`.

    What is served is the public snapshot (as `stet publish` writes it) kept
    beside the archive in ARCHIVE-public: restricted documents are not in it,
    and it is opened immutable. While serving, stet looks at the archive every
    --check-every seconds, and at once on SIGHUP: when it has changed, a new
    snapshot is built in the background and swapped in (each request is
    answered from one snapshot, start to end). Pages: /archive (tables and
    queries), /-/documents/ID (a document with its annotations), /-/search.

    With --from s3://BUCKET/PREFIX/public/ (a public read replica, on any
    machine that can read that prefix): serves the newest snapshot that
    `stet publish s3://...` uploaded there, downloaded into --cache DIR,
    checked against its SHA-256 and by `stet verify` first; every
    --check-every seconds and on SIGHUP it looks for a newer one. A snapshot
    that fails a check is not served (one line says why); the one served stays
    served, also while the store cannot be reached. See docs/replicas.md.

    \b
    Example:
        stet serve --db archive.db --port 8001
        stet serve --metadata my-metadata.yml --check-every 30
        kill -HUP PID          # publish what is new now
        stet serve --from s3://my-bucket/archive/public/ --port 8001
    """
    announce = lambda message: click.echo(message, err=True)  # noqa: E731
    if from_url:
        ctx = click.get_current_context()
        if ctx.get_parameter_source("db_path") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--from and --db cannot be used together: a replica "
                                   "serves what was published, not an archive")
        from ..remote import serve_remote  # boto3 loads only for a replica

        serve_remote(from_url, cache=cache_dir, host=host, port=port, metadata=metadata,
                     cache_mb=cache_mb, check_every=check_every, announce=announce)
        return
    if cache_dir:
        raise click.UsageError("--cache goes with --from (stet serve keeps the snapshots of "
                               "an archive in ARCHIVE-public)")
    open_archive(db_path, readonly=True).serve(  # closes its own connection first
        host=host, port=port, metadata=metadata, cache_mb=cache_mb, check_every=check_every,
        announce=announce)


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False), metavar="OUT|s3://BUCKET/PREFIX")
@click.option("--force", is_flag=True,
              help="Replace OUT if it exists and is not a snapshot of this archive (s3://: "
                   "if its latest.json names another archive's).")
@click.option("--full", is_flag=True,
              help="Build the snapshot whole, even where OUT could be brought up to date.")
@by_option
@json_option
@silent_option
@db_option
@errors
def publish(out, force, full, by, as_json, silent, db_path):
    """Write a public snapshot of the archive to OUT: nothing restricted in it.

    Leaves out restricted documents (and their attachments), their raw bytes,
    texts, annotations, revisions and events; adds full-text indexes; VACUUMs.
    The snapshot has its own event chain, whose first event records this
    archive's chain length and head hash; the archive records a `publish` event.
    Restriction is read from the event chain, not from the rows; an altered event
    stops the publication. Paths are published relative to the folder ingested.
    When OUT is an earlier snapshot of this archive, it is brought up to date
    with what was added since (in a copy, moved into place), as a full build
    would write it; after a restrict, unrestrict or edit of a document, a layer
    rename or merge, or with a snapshot of another stet version, it is built
    whole instead, and the output says why (--full: always whole).
    Prints the archive's chain head (N:HEX) to keep elsewhere, for
    `stet verify --expect-head`.
    Serve it with Datasette in immutable mode. A progress bar on a terminal
    counts the build's steps (-s: none).

    An s3:// location instead of OUT publishes for read replicas (`stet serve
    --from`): the same snapshot (the one `stet serve` keeps in ARCHIVE-public)
    is cut into 4 MiB parts, each an object PREFIX/parts/XX/SHA256 sent only
    when the store lacks it (an update changes few), then its manifest
    PREFIX/snapshots/LENGTH-HEAD.json lists them, then PREFIX/latest.json names
    it (with its SHA-256 and size); the three newest snapshots are kept, with
    their parts. Nothing is uploaded when latest.json names the archive as it
    stands. Credentials and endpoint: the standard AWS variables and files.

    \b
    Example:
        stet publish site/archive.db
        stet publish site/archive.db --full
        datasette serve -i site/archive.db --metadata metadata.yml
        stet publish s3://my-bucket/archive/public/
    """
    archive = open_archive(db_path)
    bar = progress(silent=silent, label="Publishing")
    if out.startswith("s3://"):
        summary = archive.publish_remote(out, by=user(by), force=force, full=full, progress=bar)
        out = f"{summary['url']}/{summary['snapshot']}"
    else:
        summary = archive.publish(out, by=user(by), force=force, full=full, progress=bar)
    if as_json:
        echo_json(summary)
        return
    if summary.get("build") == "unchanged" and summary.get("pointer"):
        click.echo(f"unchanged: {summary['url']}/latest.json names {summary['snapshot']}, "
                   "the archive as it stands; nothing uploaded")
        head = f"{summary['archive_head']['length']}:{summary['archive_head']['head']}"
        click.echo(f"archive head {head}")
        return
    published, left = summary["published"], summary["left_out"]
    click.echo(f"published {published['documents']} documents, {published['annotations']} "
               f"annotations, {published['events']} events to {out}")
    click.echo(f"left out {left['documents']} restricted documents, {left['annotations']} "
               f"annotations, {left['events']} events")
    if summary.get("build") == "incremental":
        added = summary["added"]
        click.echo(f"brought up to date from archive event {summary['since']['events']}: added "
                   f"{added['documents']} documents, {added['annotation_revisions']} annotation "
                   f"revisions, {added['events']} events")
    elif summary.get("build") == "unchanged":
        click.echo("unchanged: it holds the archive as it stood")
    elif summary.get("build") == "reused":
        click.echo("the snapshot stet serve keeps for the archive as it stands, as it was")
    else:
        click.echo(f"built whole: {summary['reason']}" if summary.get("reason") else "built whole")
    click.echo(f"sha256 {summary['sha256']}")
    if summary.get("pointer"):
        parts = summary.get("parts") or {}
        if parts:
            click.echo(f"sent {parts['uploaded']} of its {parts['total']} parts "
                       f"({parts['uploaded_bytes']} bytes); the store had the others")
        click.echo(f"{summary['url']}/latest.json names it now"
                   + (f"; deleted {len(summary['deleted'])} older snapshots"
                      if summary["deleted"] else "")
                   + (f" and {summary['deleted_parts']} parts no kept snapshot lists"
                      if summary.get("deleted_parts") else ""))
    head = f"{summary['archive_head']['length']}:{summary['archive_head']['head']}"
    click.echo(f"archive head {head} (keep it elsewhere: stet verify --expect-head {head} "
               "proves the archive's chain still holds it)")

