"""Commands for documents and their provenance: ingest, documents, show, text, log, verify."""

from __future__ import annotations

import contextlib
import json
import sys
import time

import click

from ..display import shown
from .common import (by_option, cli, db_option, echo_json, echo_json_lines, echo_lines, errors,
                     json_option, open_archive, progress, progressbar, silent_option, user)
from .output import output_options, write
from .versions import carried_line


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--source", help="Where the files came from (a URL or a description).")
@click.option("--title", help="The document's title (a single file only).")
@click.option("--restricted", is_flag=True, help="Never publish these documents.")
@click.option("--supersedes", "supersedes", metavar="DOC",
              help="The document this one replaces: a newer version, which inherits its "
                   "restriction and gets its annotations (exact, fuzzy or orphaned).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), metavar="X",
              help="With --supersedes: the least score (0-1) at which an annotation whose "
                   "passage changed is placed approximately, not orphaned (default 0.75).")
@click.option("--extract-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Seconds one file's text extraction may take (default 30); past it the file "
                   "is kept with an empty text and a warning.")
@click.option("--workers", type=click.IntRange(min=0), envvar="STET_WORKERS", metavar="N",
              help="Worker processes that read and extract ($STET_WORKERS; 0: none; default: "
                   "as many as pay).")
@by_option
@json_option
@silent_option
@db_option
@errors
def ingest(paths, source, title, restricted, supersedes, threshold, extract_timeout, workers, by,
           as_json, silent, db_path):
    """Archive files and folders (recursively): bytes, text and an event each.

    The same bytes again are a duplicate: no second copy, but a new event (who
    submitted them again, from where). A bad path is reported and the rest go on;
    the exit code is then 1. A folder that is a BagIt bag is validated completely
    (every checksum) before anything is written; an invalid bag stops the command,
    naming the failing files. Many files are read in other processes while this one
    writes (--workers N: a pool of N; 0: none); the progress bar shows files,
    bytes and rate. With --supersedes DOC, each new document is a newer version of
    DOC: it is restricted if DOC is, and DOC's annotations are carried to it, each
    placed exact, fuzzy (scored) or orphaned (kept, no span): see stet reanchor.

    \b
    Example:
        stet ingest ingest/ --source https://www.unicode.org/udhr/
        stet ingest report.pdf --title "Annual report 2014" --restricted --json
        stet ingest statement-v2.txt --supersedes 11
    """
    archive = open_archive(db_path, create=True)

    def progress(files, nbytes):
        return _progress(files, nbytes, silent)

    if threshold is not None and supersedes is None:
        raise click.UsageError("--threshold goes with --supersedes")
    results = archive.ingest(paths, by=user(by), source=source, title=title,
                             restricted=restricted, supersedes=supersedes, progress=progress,
                             extract_timeout=extract_timeout, workers=workers,
                             threshold=threshold)
    echo_lines([f"Error: {shown(r['error'])}" if r["status"] == "error"
                else f"Warning: {shown(r['path'])}: {shown(r['warning'])}"
                for r in results if r["status"] == "error" or r.get("warning")], err=True)
    if as_json:
        echo_json_lines({k: (_counts(v) if k == "carried" else v) for k, v in r.items()
                         if k != "warning"} for r in results)
    else:
        echo_lines(line for r in results if r["status"] != "error" for line in (
            f"{r['status']:<9} {r['id']:>6}  {r['sha256'][:12]}  {shown(r['path'])}",
            *([carried_line(r["carried"])] if r.get("carried") else [])))
    if any(r["status"] == "error" for r in results):
        sys.exit(1)


def _counts(summary: dict) -> dict:
    """A carry's summary without the list of every annotation it wrote."""
    return {k: v for k, v in summary.items() if k != "annotations"}


@contextlib.contextmanager
def _progress(files, nbytes, silent):
    """Files, bytes and rate on a terminal: `Ingesting [###---]  40%  812/2000 files,
    38.2/95.0 MB, 21.4 MB/s`."""
    done = {"files": 0, "bytes": 0}
    start = time.monotonic()

    def show(_item):
        rate = done["bytes"] / max(time.monotonic() - start, 1e-6) / 1e6
        return (f"{done['files']}/{files} files, {done['bytes'] / 1e6:.1f}/{nbytes / 1e6:.1f} MB, "
                f"{rate:.1f} MB/s")

    with progressbar(None, silent=silent, label="Ingesting", length=max(nbytes, 1),
                     item_show_func=show) as bar:
        def tick(size):
            done["files"] += 1
            done["bytes"] += size
            bar.update(size)

        yield tick


@cli.command()
@click.option("--source", metavar="TEXT",
              help="Only documents whose current source contains TEXT (exact characters).")
@click.option("--restricted/--public", "restricted", default=None,
              help="Only documents withheld from the public (restricted, or an attachment of "
                   "a restricted message) / only the others.")
@click.option("--since", metavar="TIME", help="Only documents ingested at or after this ISO 8601 instant.")
@output_options
@db_option
@errors
def documents(source, restricted, since, fmt, db_path):
    """List the documents, in id order.

    A table for people (id, SHA-256 prefix, media type, size, whether withheld, title),
    or every field with --json, --nl, --csv or --tsv. --source matches a part of the
    current source, as given (case included); --restricted lists what `stet publish`
    leaves out, --public what it includes.

    \b
    Example:
        stet documents --source example.org --since 2026-11-01
        stet documents --restricted --csv > withheld.csv
    """
    archive = open_archive(db_path, readonly=True)
    write(archive.documents(source=source, restricted=restricted, since=since), fmt,
          table=_document_row)


def _document_row(d: dict) -> dict:
    return {"id": d["id"], "sha256": d["sha256"][:12], "media_type": d["media_type"],
            "size": d["size"], "restricted": d["restricted"], "title": d["title"]}


@cli.command()
@click.argument("doc")
@click.option("--history", "with_history", is_flag=True,
              help="Also every title, source and restriction it had, with who, when and why.")
@json_option
@db_option
@errors
def show(doc, with_history, as_json, db_path):
    """One document's record: hashes, source, who ingested it and when, its text.

    DOC is a document id or a SHA-256 prefix of at least 8 hex digits. Title,
    source and restriction are the current ones; --history lists every value
    they had (the ingest, then each restrict, unrestrict and edit).

    \b
    Example:
        stet show 3
        stet show sha256:1f2e3d4c --json
        stet show 3 --history
    """
    archive = open_archive(db_path, readonly=True)
    record = archive.document(doc)
    if with_history:
        record["history"] = archive.document_history(record["id"])
    if as_json:
        echo_json(record)
        return
    for key, value in record.items():
        if value is not None and key != "history":
            click.echo(f"{key + ':':<19}{shown(value)}")
    for change in record.get("history", []):
        flag = "restricted" if change["restricted"] else "public"
        reason = f"  ({shown(change['reason'])})" if change["reason"] else ""
        click.echo(f"{change['time']}  {change['action']:<10} by {shown(change['by'])}: "
                   f"title {_quoted(change['title'])}, source {_quoted(change['source'])}, "
                   f"{flag}{reason}")


def _quoted(value) -> str:
    return "None" if value is None else f"'{shown(value)}'"


@cli.command()
@click.argument("doc")
@db_option
@errors
def text(doc, db_path):
    """Print a document's exact extracted text (UTF-8, nothing added).

    \b
    Example:
        stet text 3 > udhr.txt
    """
    value = open_archive(db_path, readonly=True).text(doc)
    sys.stdout.buffer.write(value.encode("utf-8", "surrogatepass"))
    sys.stdout.flush()


@cli.command()
@click.argument("doc", required=False)
@click.option("--head", "head_only", is_flag=True,
              help="Only the chain's length and head hash, as LENGTH:HASH (the form "
                   "verify --expect-head takes): keep it elsewhere.")
@output_options
@db_option
@errors
def log(doc, head_only, fmt, db_path):
    """The event chain, oldest first (only DOC's events, if given).

    A table for people (seq, time, actor, action, subject, hash prefix), or every
    field (details as JSON) with --json, --nl, --csv or --tsv.

    --head prints the chain's length and head hash instead ({"length": N,
    "head": "HEX"} with --json or --nl). Kept outside the archive, it lets
    `stet verify --expect-head N:HEX` detect what no local check can: a chain
    cut short, or deleted and chained again.

    \b
    Example:
        stet log --nl
        stet log --head --json > head.json
    """
    if head_only:
        if doc is not None:
            raise click.UsageError("--head is the head of the whole chain: give no DOC")
        head = open_archive(db_path, readonly=True).head()
        if fmt == "table":
            click.echo(f"{head['length']}:{head['head']}")
        elif fmt == "json":  # one object, not an array: what verify --expect-head is kept from
            click.echo(json.dumps(head))
        else:
            write([head], fmt)
        return
    write(open_archive(db_path, readonly=True).log(doc), fmt, table=_event_row)


def _event_row(e: dict) -> dict:
    return {"seq": e["seq"], "time": e["time"], "actor": e["actor"], "action": e["action"],
            "subject": e["subject"], "hash": e["hash"][:12]}


def _expect_head(ctx, param, value):
    """``N:HEX`` (as `stet log --head` prints it) -> ``(N, hex)``; a bad form is a usage error."""
    if value is None:
        return None
    length, sep, head = value.strip().partition(":")
    head = head.strip().lower()
    if (not sep or not length.strip().isdigit() or len(head) != 64
            or any(c not in "0123456789abcdef" for c in head)):
        raise click.BadParameter(
            f"{value!r}: give LENGTH:HASH, the chain's length and the SHA-256 (64 hex digits) "
            "of its head, as `stet log --head` prints them")
    return int(length), head


@cli.command()
@click.option("--expect-head", "expect_head", metavar="N:HEX", callback=_expect_head,
              help="Fail unless the chain holds this head hash at this length "
                   "(from an earlier `stet log --head`).")
@json_option
@silent_option
@db_option
@errors
def verify(expect_head, as_json, silent, db_path):
    """Check fixity of every blob (in the file or an object store) and text, the whole
    event chain and every span.

    Prints each problem, naming the document, annotation or event; exit code 1 if
    any is found. Runs on a damaged schema too, and reports the damage.
    --expect-head N:HEX, a head kept elsewhere, also catches a chain cut short
    or rewritten from that point. A progress bar on a terminal counts the checks
    and the documents (-s: none).

    \b
    Example:
        stet verify
        stet verify --expect-head 42:1f2e3d4c...
    """
    # check=False: a schema that no longer matches its migrations is a problem to report,
    # not a reason to refuse to look.
    archive = open_archive(db_path, readonly=True, check=False)
    notes: list[str] = []
    problems = archive.verify(expect_head=expect_head,
                              progress=progress(silent=silent, label="Verifying"), notes=notes)
    counts = archive.counts()
    if not as_json:
        echo_lines((f"Note: {note}" for note in notes), err=True)
    if as_json:
        echo_json({"ok": not problems, "problems": problems, "notes": notes, "checked": counts})
    elif problems:
        for problem in problems:
            click.echo(problem)
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
    else:
        click.echo("ok: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if problems:
        sys.exit(1)
