"""Commands for annotations: layer add/list, annotate, revise, retract, annotations, history,
export, import."""

from __future__ import annotations

import os
import sys

import click

from ..annotations import parse_overlap
from ..display import shown
from .common import (by_option, cli, db_option, echo_json, echo_json_lines, errors, json_option,
                     open_archive, user)


def span_options(fn):
    for option in reversed((
        click.option("--start", type=int, help="First code point of the span (from 0)."),
        click.option("--end", type=int, help="Code point just after the span."),
        click.option("--quote", help="The exact text of the span, found in the document."),
        click.option("--prefix", help="Text just before the quote, to choose among matches."),
        click.option("--suffix", help="Text just after the quote, to choose among matches."),
    )):
        fn = option(fn)
    return fn


def _line(a: dict) -> str:
    span = f"{a['start']}:{a['end']}" if a["start"] is not None else f"reply to {a['reply_to']}"
    quote = " ".join((a["exact"] or "").split())
    quote = quote if len(quote) <= 40 else quote[:39] + "…"
    flag = " [retracted]" if a["status"] == "retracted" else ""
    return (f"{a['id']:>6}  {a['document']:>5}  {shown(a['layer']):<14} {span:<13} "
            f"{shown(a['author']):<10} {a['modified']}  r{a['revision']}{flag}  "
            f"\"{shown(quote)}\"  {shown(a['body'])}")


def _show(record: dict, as_json: bool) -> None:
    if as_json:
        echo_json(record)
    else:
        click.echo(_line(record))


@cli.group()
def layer() -> None:
    """Annotation layers: named sets of annotations (entities, claims, translation...).

    \b
    Example:
        stet layer add claims --description "Claims to verify" --colour "#e6550d"
        stet layer list
    """


@layer.command("add")
@click.argument("name")
@click.option("--description", help="What the layer is for.")
@click.option("--colour", "--color", "colour", help="Display colour: #rgb, #rrggbb or a name.")
@by_option
@json_option
@db_option
@errors
def layer_add(name, description, colour, by, as_json, db_path):
    """Create a layer (layers are also created on first use by annotate).

    \b
    Example:
        stet layer add entities --description "People, places, organisations"
    """
    record = open_archive(db_path, create=True).add_layer(
        name, by=user(by), description=description, colour=colour)
    if as_json:
        echo_json(record)
    else:
        click.echo(f"layer {record['id']}: {record['name']}")


@layer.command("list")
@json_option
@db_option
@errors
def layer_list(as_json, db_path):
    """List the layers with how many active annotations each holds.

    \b
    Example:
        stet layer list --json
    """
    layers = open_archive(db_path, readonly=True).layers()
    if as_json:
        echo_json(layers)
        return
    for l in layers:
        click.echo(f"{l['id']:>4}  {shown(l['name']):<16} {l['annotations']:>7}  "
                   f"{shown(l['colour']) or '-':<8} {shown(l['description'])}")


@cli.command()
@click.argument("doc")
@click.option("--layer", required=True, help="The layer (created if new).")
@click.option("--body", default="", help="The note.")
@span_options
@click.option("--motivation", help="W3C motivation (default commenting; replying for a reply).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--reply-to", "reply_to", type=int, metavar="ANN",
              help="Reply to this annotation (a reply needs no span).")
@by_option
@json_option
@db_option
@errors
def annotate(doc, layer, body, start, end, quote, prefix, suffix, motivation, tags, reply_to,
             by, as_json, db_path):
    """Annotate a span of DOC's text, given by offsets or by quote.

    Offsets are Unicode code points, START inclusive, END exclusive. A quote must occur
    exactly once (narrow it with --prefix/--suffix).

    \b
    Example:
        stet annotate 6 --layer entities --quote "سازمان ملل متحد" --body "United Nations"
        stet annotate 4 --layer claims --start 120 --end 164 --body "Check this" --tag check
        stet annotate 4 --layer claims --reply-to 7 --body "Confirmed by the minutes"
    """
    record = open_archive(db_path).annotate(
        doc, layer=layer, body=body, by=user(by), start=start, end=end, quote=quote,
        prefix=prefix, suffix=suffix, motivation=motivation, tags=tags, reply_to=reply_to)
    _show(record, as_json)


@cli.command()
@click.argument("ann", type=int)
@click.option("--body", help="The new note.")
@span_options
@click.option("--motivation", help="A new W3C motivation.")
@click.option("--tag", "tags", multiple=True, help="The new tags (repeatable; replace the old).")
@by_option
@json_option
@db_option
@errors
def revise(ann, body, start, end, quote, prefix, suffix, motivation, tags, by, as_json, db_path):
    """Revise annotation ANN: a new revision; every earlier one is kept.

    What is not given stays as it was.

    \b
    Example:
        stet revise 7 --body "United Nations (UN)"
        stet revise 7 --quote "ملل متحد" --tag org
    """
    record = open_archive(db_path).revise(
        ann, by=user(by), body=body, start=start, end=end, quote=quote, prefix=prefix,
        suffix=suffix, tags=list(tags) if tags else None, motivation=motivation)
    _show(record, as_json)


@cli.command()
@click.argument("ann", type=int)
@click.option("--reason", help="Why it is retracted.")
@by_option
@json_option
@db_option
@errors
def retract(ann, reason, by, as_json, db_path):
    """Retract annotation ANN: a tombstone revision; its history stays.

    \b
    Example:
        stet retract 7 --reason "duplicate of 9"
    """
    record = open_archive(db_path).retract(ann, by=user(by), reason=reason)
    _show(record, as_json)


@cli.command()
@click.argument("doc", required=False)
@click.option("--layer", help="Only this layer.")
@click.option("--author", help="Only annotations created by this person.")
@click.option("--at", "at", metavar="TIME", help="As they were at this ISO 8601 instant.")
@click.option("--overlapping", metavar="N:M", help="Only spans with start < M and N < end.")
@click.option("--include-retracted", is_flag=True, help="Retracted annotations too.")
@json_option
@db_option
@errors
def annotations(doc, layer, author, at, overlapping, include_retracted, as_json, db_path):
    """List annotations: the current state, or the state at a past instant.

    \b
    Example:
        stet annotations 6 --layer entities
        stet annotations 6 --overlapping 100:200 --json
        stet annotations --at 2026-11-24T17:00:00+01:00 --author ana
    """
    records = open_archive(db_path, readonly=True).annotations(
        doc, layer=layer, author=author, at=at,
        overlapping=parse_overlap(overlapping) if overlapping else None,
        include_retracted=include_retracted)
    if as_json:
        echo_json(records)
    else:
        for record in records:
            click.echo(_line(record))


@cli.command()
@click.argument("ann", type=int)
@json_option
@db_option
@errors
def history(ann, as_json, db_path):
    """Every revision of annotation ANN, oldest first, with author and time.

    A revision that came in by `stet import` also names who imported it
    ("by X, imported by Y"; `imported_by` in the JSON).

    \b
    Example:
        stet history 7 --json
    """
    records = open_archive(db_path, readonly=True).history(ann)
    if as_json:
        echo_json(records)
    else:
        for record in records:
            imported = (f"  by {shown(record['author'])}, imported by "
                        f"{shown(record['imported_by'])}"
                        if record.get("imported_by") is not None else "")
            click.echo(_line(record) + imported
                       + (f"  ({shown(record['reason'])})" if record["reason"] else ""))


@cli.command()
@click.argument("docs", nargs=-1)
@click.option("--layer", help="Only this layer.")
@click.option("--history", "with_history", is_flag=True,
              help="Every revision (retractions too), each linked to its predecessor.")
@click.option("--format", "fmt", type=click.Choice(["w3c", "jsonl", "brat"]), default="w3c",
              show_default=True, help="W3C AnnotationCollection, W3C JSON Lines, or brat standoff.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write to this file (default: stdout).")
@click.option("--include-restricted", is_flag=True,
              help="Include annotations on restricted documents (and their attachments).")
@db_option
@errors
def export(docs, layer, with_history, fmt, output, include_restricted, db_path):
    """Export annotations (of DOCs, or all) as W3C Web Annotations or brat standoff.

    By default the current state of active annotations; with --history every revision,
    so that `stet import` rebuilds the whole history in another archive.

    Annotations on restricted documents (and on attachments of restricted messages) are
    left out, with a warning on stderr saying how many, unless --include-restricted is
    given; naming a restricted DOC without it is an error.

    \b
    Example:
        stet export --format w3c -o annotations.json
        stet export 6 --layer entities --history --format jsonl -o entities.jsonl
        stet export 4 --format brat -o udhr_eng.ann
        stet export 11 --include-restricted -o restricted-11.json
    """
    archive = open_archive(db_path, readonly=True)
    options = dict(fmt=fmt, layer=layer, history=with_history,
                   include_restricted=include_restricted)
    if output == "-":
        summary = archive.export(sys.stdout, docs, **options)
    else:
        partial = f"{output}.partial-{os.getpid()}"  # the file appears only when complete
        try:
            with open(partial, "w", encoding="utf-8") as out:
                summary = archive.export(out, docs, **options)
            os.replace(partial, output)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    if summary["left_out"]:
        n = summary["left_out"]
        click.echo(f"Warning: left out {n} annotation{'' if n == 1 else 's'} on restricted "
                   "documents (--include-restricted to include them)", err=True)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@by_option
@json_option
@db_option
@errors
def import_(paths, by, as_json, db_path):
    """Import W3C Web Annotations (JSON-LD collections or JSON Lines) from files and folders.

    Documents are found by the SHA-256 of their raw bytes; spans are re-anchored by position
    and the quote is checked. Importing the same annotations again adds nothing; annotations
    the archive already holds but with other content are kept as the archive has them, with
    a warning on stderr. A malformed file, a time in the future (beyond 5 minutes of clock
    skew) or a revision dated before the one it follows is refused whole, and then nothing
    is imported.

    \b
    Example:
        stet import annotations/
        stet import entities.jsonl --json
    """
    results = open_archive(db_path).import_(paths, by=user(by))
    for r in results:
        if r.get("conflicts"):
            click.echo(f"Warning: {shown(r['file'])}: {r['conflicts']} annotations already in "
                       f"the archive differ from the file (first: {shown(r['first_conflict'])});"
                       " the archive's are kept", err=True)
    if as_json:
        echo_json_lines(results)
        return
    for r in results:
        click.echo(f"{r['file']}: {r['annotations']} new annotations, {r['revisions']} "
                   f"revisions, {r['skipped']} already here")
