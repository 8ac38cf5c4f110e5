"""Commands for documents and their provenance: ingest, documents, show, text, log, verify."""

from __future__ import annotations

import contextlib
import sys
import time

import click

from .common import (by_option, cli, db_option, echo_json, echo_json_lines, echo_lines, errors,
                     json_option, open_archive, progressbar, silent_option, user)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--source", help="Where the files came from (a URL or a description).")
@click.option("--title", help="The document's title (a single file only).")
@click.option("--restricted", is_flag=True, help="Never publish these documents.")
@click.option("--supersedes", "supersedes", metavar="DOC", help="The document this one replaces.")
@by_option
@json_option
@silent_option
@db_option
@errors
def ingest(paths, source, title, restricted, supersedes, by, as_json, silent, db_path):
    """Archive files and folders (recursively): bytes, text and an event each.

    The same bytes again are a duplicate: no second copy, but a new event (who
    submitted them again, from where). A bad path is reported and the rest go on;
    the exit code is then 1. A folder that is a BagIt bag is validated completely
    (every checksum) before anything is written; an invalid bag stops the command,
    naming the failing files. Many files are read in other processes while this one
    writes ($STET_WORKERS=N: a pool of N; 0: none); the progress bar shows files,
    bytes and rate.

    \b
    Example:
        stet ingest ingest/ --source https://www.unicode.org/udhr/
        stet ingest report.pdf --title "Annual report 2014" --restricted --json
    """
    archive = open_archive(db_path, create=True)

    def progress(files, nbytes):
        return _progress(files, nbytes, silent)

    results = archive.ingest(paths, by=user(by), source=source, title=title,
                             restricted=restricted, supersedes=supersedes, progress=progress)
    echo_lines([f"Error: {r['error']}" if r["status"] == "error"
                else f"Warning: {r['path']}: {r['warning']}"
                for r in results if r["status"] == "error" or r.get("warning")], err=True)
    if as_json:
        echo_json_lines({k: v for k, v in r.items() if k != "warning"} for r in results)
    else:
        echo_lines(f"{r['status']:<9} {r['id']:>6}  {r['sha256'][:12]}  {r['path']}"
                   for r in results if r["status"] != "error")
    if any(r["status"] == "error" for r in results):
        sys.exit(1)


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
@json_option
@db_option
@errors
def documents(as_json, db_path):
    """List the documents.

    \b
    Example:
        stet documents --json
    """
    docs = open_archive(db_path, readonly=True).documents()
    if as_json:
        echo_json(docs)
        return
    for d in docs:
        flags = " restricted" if d["restricted"] else ""
        click.echo(f"{d['id']:>6}  {d['sha256'][:12]}  {d['media_type']:<24} {d['size']:>10}  "
                   f"{d['title']}{flags}")


@cli.command()
@click.argument("doc")
@json_option
@db_option
@errors
def show(doc, as_json, db_path):
    """One document's record: hashes, source, who ingested it and when, its text.

    DOC is a document id or a SHA-256 prefix of at least 8 hex digits.

    \b
    Example:
        stet show 3
        stet show sha256:1f2e3d4c --json
    """
    record = open_archive(db_path, readonly=True).document(doc)
    if as_json:
        echo_json(record)
        return
    for key, value in record.items():
        if value is not None:
            click.echo(f"{key + ':':<19}{value}")


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
@json_option
@db_option
@errors
def log(doc, as_json, db_path):
    """The event chain, oldest first (only DOC's events, if given).

    \b
    Example:
        stet log --json
    """
    events = open_archive(db_path, readonly=True).log(doc)
    if as_json:
        echo_json(events)
        return
    for e in events:
        click.echo(f"{e['seq']:>6}  {e['time']}  {e['actor']:<12} {e['action']:<18} "
                   f"{e['subject'] or '-':<16} {e['hash'][:12]}")


@cli.command()
@json_option
@db_option
@errors
def verify(as_json, db_path):
    """Check fixity of every blob and text, the whole event chain and every span.

    Prints each problem, naming the document, annotation or event; exit code 1 if
    any is found.

    \b
    Example:
        stet verify
    """
    archive = open_archive(db_path, readonly=True)
    problems = archive.verify()
    counts = archive.counts()
    if as_json:
        echo_json({"ok": not problems, "problems": problems, "checked": counts})
    elif problems:
        for problem in problems:
            click.echo(problem)
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
    else:
        click.echo("ok: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if problems:
        sys.exit(1)
