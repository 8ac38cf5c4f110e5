"""Where raw bytes live: ``stet store`` (show, set, migrate, gc)."""

from __future__ import annotations

import sys

import click

from .common import (by_option, cli, db_option, echo_json, echo_lines, errors, json_option,
                     open_archive, progress, silent_option, user)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@cli.group()
def store() -> None:
    """Where raw bytes live: in the archive file (the default), or as objects in an
    S3-compatible store (AWS S3, Ceph RGW, MinIO, SeaweedFS).

    The endpoint and credentials come the standard way: AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, or AWS_PROFILE and the
    files in ~/.aws. See docs/scaling.md.
    """


@store.command("show")
@json_option
@db_option
@errors
def show(as_json, db_path):
    """Where new raw bytes go, and how many are where.

    \b
    Example:
        stet store show
    """
    status = open_archive(db_path, readonly=True).store()
    if as_json:
        echo_json(status)
        return
    click.echo(f"new raw bytes go to: {status['store'] or 'the archive file'}")
    for key, label in (("in_file", "in the archive file"), ("as_text", "kept as their text"),
                       ("in_stores", "in object stores")):
        part = status[key]
        click.echo(f"{label}: {_n(part['blobs'], 'blob')}, {_size(part['bytes'])}")


@store.command("set")
@click.argument("url")
@by_option
@json_option
@db_option
@errors
def set_(url, by, as_json, db_path):
    """Keep new raw bytes in URL: s3://BUCKET/PREFIX (or `file`: the archive file).

    Checks that the store answers and writes its marker (PREFIX/stet-archive.json,
    naming this archive: one prefix, one archive), then records a store-set event.
    Bytes already in the file stay there until `stet store migrate`.

    \b
    Example:
        AWS_ENDPOINT_URL=http://127.0.0.1:8333 stet store set s3://archive/stet
    """
    event = open_archive(db_path, create=True).set_store(url, by=user(by))
    if as_json:
        echo_json({"store": event["details"]["store"], "event": event["seq"]})
    else:
        click.echo(f"new raw bytes go to {event['details']['store'] or 'the archive file'} "
                   f"(event {event['seq']})")


@store.command("migrate")
@by_option
@json_option
@silent_option
@db_option
@errors
def migrate(by, as_json, silent, db_path):
    """Move the raw bytes kept in the archive file to the current store.

    Each batch is read from the file and checked against its SHA-256, written (a
    pack of small files, or one object per large file), read back from the store
    and checked again, then recorded (a store-migrate event) with its chunks
    deleted from the file, in one transaction. Interrupted, it resumes where it
    stopped. The file is vacuumed at the end. Bytes kept as their text (a UTF-8
    file that is its own text) stay: the text is needed in the file anyway.

    \b
    Example:
        stet store migrate
    """
    archive = open_archive(db_path)
    moved = archive.migrate_store(by=user(by), progress=progress(silent=silent, label="Moving"))
    if as_json:
        echo_json(moved)
    else:
        click.echo(f"moved {_n(moved['blobs'], 'blob')} ({_size(moved['bytes'])}) to "
                   f"{moved['store']} in {_n(moved['objects'], 'object')}")


@store.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@json_option
@db_option
@errors
def gc(dry_run, as_json, db_path):
    """Delete the objects no document refers to (left by an interrupted write).

    Lists every store the archive has used, under the archive's write lock (an
    ingest waits meanwhile), and deletes each object none of its rows refers to;
    with --dry-run, only lists them, opening the archive read-only. The archive
    file is not written.

    \b
    Example:
        stet store gc --dry-run
    """
    found = open_archive(db_path, readonly=dry_run).gc_store(dry_run=dry_run)
    if as_json:
        echo_json([{**item, "modified": item["modified"].isoformat()} for item in found])
        return
    verb = "would delete" if dry_run else "deleted"
    echo_lines(f"{verb} s3://{item['store'].split('/', 3)[2]}/{item['key']} ({item['size']} bytes)"
               for item in found)
    click.echo(f"{len(found)} unreferenced object{'s' if len(found) != 1 else ''} "
               f"{'found' if dry_run else 'deleted'}", err=True)
    sys.stdout.flush()
