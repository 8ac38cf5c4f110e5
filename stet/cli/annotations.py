# Over 400 lines on purpose: one command group (annotations), each command a thin layer of
# options, help text with its example, and one call to the Archive.
"""Commands for annotations: layer add/list, annotate, revise, retract, annotations, history,
export, import."""

from __future__ import annotations

import sys

import click

from ..annotations.worker import collector_paused
from ..display import shown
from ..files import write_whole
from .common import (by_option, cli, db_option, echo_json, echo_json_lines, errors, json_option,
                     open_archive, progress, reason_options, silent_option, user)
from .output import output_options, write


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


def _span(a: dict) -> str:
    if a["start"] is not None:
        return f"{a['start']}:{a['end']}" + (f" {a['anchoring']} {a['score']:.2f}"
                                             if a.get("anchoring") == "fuzzy" else "")
    if a["reply_to"] is not None:
        return f"reply to {a['reply_to']}"
    return "orphaned" if a.get("anchoring") == "orphaned" else "no span"


def _quote(a: dict) -> str:
    """The quoted text on one line, cut at 40 characters."""
    quote = " ".join((a["exact"] or "").split())
    return quote if len(quote) <= 40 else quote[:39] + "…"


def _line(a: dict) -> str:
    flag = " [retracted]" if a["status"] == "retracted" else ""
    return (f"{a['id']:>6}  {a['document']:>5}  {shown(a['layer']):<14} {_span(a):<13} "
            f"{shown(a['author']):<10} {a['modified']}  r{a['revision']}{flag}  "
            f"\"{shown(_quote(a))}\"  {shown(a['body'])}")


def _annotation_row(a: dict) -> dict:
    return {"id": a["id"], "document": a["document"], "layer": a["layer"], "span": _span(a),
            "author": a["author"], "modified": a["modified"], "revision": a["revision"],
            "status": a["status"], "tags": a["tags"], "exact": _quote(a), "body": a["body"]}


def _revision_row(a: dict) -> dict:
    return {"revision": a["revision"], "status": a["status"], "author": a["author"],
            "imported_by": a.get("imported_by"), "modified": a["modified"], "layer": a["layer"],
            "span": _span(a), "reason": a["reason"], "exact": _quote(a), "body": a["body"]}


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
@output_options
@db_option
@errors
def layer_list(fmt, db_path):
    """List the layers with how many active annotations each holds.

    A table for people, or --json, --nl, --csv, --tsv.

    \b
    Example:
        stet layer list --json
    """
    write(open_archive(db_path, readonly=True).layers(), fmt, table=_layer_row)


def _layer_row(layer: dict) -> dict:
    return {key: layer[key] for key in ("id", "name", "annotations", "colour", "description")}


@layer.command("rename")
@click.argument("old")
@click.argument("new")
@reason_options
def layer_rename(old, new, reason, by, as_json, db_path):
    """Rename layer OLD to NEW: an event; the old name stays on record.

    Every annotation of OLD is in NEW from now on; their revisions, and the events that
    named OLD, stay as they were. A name is never used twice: NEW may not be a name any
    layer has or had (to join two layers, merge them).

    \b
    Example:
        stet layer rename entitys entities-typo-fixed --reason "typo"
    """
    record = open_archive(db_path).rename_layer(old, new, by=user(by), reason=reason)
    if as_json:
        echo_json(record)
    else:
        n = record["annotations"]
        click.echo(f"layer {record['from']} ({shown(old)}) is now layer {record['id']} "
                   f"({shown(new)}): {n} annotation{'' if n == 1 else 's'}")


@layer.command("merge")
@click.argument("source", metavar="FROM")
@click.argument("into")
@reason_options
def layer_merge(source, into, reason, by, as_json, db_path):
    """Merge layer FROM into layer INTO: an event; FROM is closed.

    Every annotation of FROM is in INTO from now on (their revisions keep the layer they
    were made in); annotating in FROM afterwards goes to INTO, with a warning.

    \b
    Example:
        stet layer merge entitys entities --reason "typo of entities"
    """
    record = open_archive(db_path).merge_layers(source, into, by=user(by), reason=reason)
    if as_json:
        echo_json(record)
    else:
        n = record["annotations"]
        click.echo(f"layer {shown(source)} merged into {shown(into)}: "
                   f"{n} annotation{'' if n == 1 else 's'} moved")


@cli.command()
@click.argument("doc", required=False)
@click.option("--layer", help="The layer (created if new, with a warning; a reply: its "
              "parent's).")
@click.option("--body", default="", help="The note.")
@span_options
@click.option("--motivation", help="W3C motivation (default commenting; replying for a reply).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--reply-to", "reply_to", type=int, metavar="ANN",
              help="Reply to this annotation (a reply needs no span, DOC nor --layer).")
@by_option
@json_option
@db_option
@errors
def annotate(doc, layer, body, start, end, quote, prefix, suffix, motivation, tags, reply_to,
             by, as_json, db_path):
    """Annotate a span of DOC's text, given by offsets or by quote.

    Offsets are Unicode code points, START inclusive, END exclusive. A quote must occur
    exactly once (narrow it with --prefix/--suffix). A reply (--reply-to) is on its
    parent's document and in its parent's layer: DOC and --layer may be left out.

    Warnings on stderr, the annotation still made: a --layer that did not exist (a new
    layer: a typo?), one renamed or merged (the annotation goes where it went), and an
    annotation that already marks the same span in the same layer.

    \b
    Example:
        stet annotate 7 --layer entities --quote "منشور" --body "the UN Charter"
        stet annotate 5 --layer claims --start 462 --end 541 --body "Check this" --tag check
        stet annotate --reply-to 14 --body "Confirmed by the French text"
    """
    if doc is None and reply_to is None:
        raise click.UsageError("give DOC (only a reply, --reply-to, may leave it out)")
    if layer is None and reply_to is None:
        raise click.UsageError("give --layer (only a reply, --reply-to, may leave it out)")
    record = open_archive(db_path).annotate(
        doc, layer=layer, body=body, by=user(by), start=start, end=end, quote=quote,
        prefix=prefix, suffix=suffix, motivation=motivation, tags=tags, reply_to=reply_to,
        warn=lambda note: click.echo(f"Warning: {shown(note)}", err=True))
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
        stet revise 11 --body "United Nations (UN)"
        stet revise 11 --quote "ملل متحد" --tag org
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
        stet retract 3 --reason "the count is sourced in the next paragraph"
    """
    record = open_archive(db_path).retract(ann, by=user(by), reason=reason)
    _show(record, as_json)


@cli.command()
@click.argument("doc", required=False)
@click.option("--layer", help="Only this layer.")
@click.option("--author", help="Only annotations created by this person.")
@click.option("--tag", "tags", multiple=True,
              help="Only annotations with this tag (repeatable: with every one of them).")
@click.option("--at", "at", metavar="TIME", help="As they were at this ISO 8601 instant.")
@click.option("--since", metavar="TIME",
              help="Only annotations whose revision shown was made at or after this instant.")
@click.option("--overlapping", metavar="N:M", help="Only spans with start < M and N < end.")
@click.option("--include-retracted", is_flag=True, help="Retracted annotations too.")
@click.option("--anchoring", type=click.Choice(["exact", "fuzzy", "orphaned"]),
              help="Only annotations carried from an older version and placed so (orphaned: "
                   "still without a span): what needs a human look.")
@output_options
@db_option
@errors
def annotations(doc, layer, author, tags, at, since, overlapping, include_retracted, anchoring,
                fmt, db_path):
    """List annotations: the current state, or the state at a past instant.

    A table for people (the quote cut at 40 characters), or every field with
    --json, --nl, --csv or --tsv. Filters combine: --tag twice means both tags;
    with --at, --since applies to the revisions as they stood then. Each reply comes
    right after its parent (threaded, at any depth). An empty table says so on stderr
    ("no annotations", or "no annotations at that instant" with --at); the other
    formats print nothing but an empty listing. An annotation carried from an older
    version (stet reanchor) has carried_from, anchoring (exact, fuzzy, orphaned) and
    score; the table shows a fuzzy one's score beside its span, and an orphan's span as
    "orphaned".

    \b
    Example:
        stet annotations 7 --layer entities
        stet annotations 7 --overlapping 1100:1200 --json
        stet annotations --at 2026-11-24T17:00:00+01:00 --author ana
        stet annotations --tag check --since 2026-11-01 --csv
        stet annotations 8 --anchoring orphaned
    """
    records = open_archive(db_path, readonly=True).annotations(
        doc, layer=layer, author=author, tags=tags, at=at, since=since, overlapping=overlapping,
        include_retracted=include_retracted, anchoring=anchoring)
    seen = []
    write(_counted(records, seen), fmt, table=_annotation_row)
    if not seen and fmt == "table":  # a person reading: say so (machine formats stay pure)
        click.echo("no annotations at that instant" if at is not None else "no annotations",
                   err=True)


def _counted(records, seen: list):
    for record in records:
        if not seen:
            seen.append(True)
        yield record


@cli.command()
@click.argument("ann", type=int)
@output_options
@db_option
@errors
def history(ann, fmt, db_path):
    """Every revision of annotation ANN, oldest first, with author and time.

    A revision that came in by `stet import` also names who imported it
    (`imported_by`). A table for people, or --json, --nl, --csv, --tsv.

    \b
    Example:
        stet history 2 --json
    """
    write(open_archive(db_path, readonly=True).history(ann), fmt, table=_revision_row)


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

    brat is one DOC's standoff, written to a file: -o NAME.ann, with the document's
    text beside it as NAME.txt (brat reads both). Tags and replies go in each span's
    AnnotatorNotes.

    \b
    Example:
        stet export --format w3c -o annotations.json
        stet export 7 --layer entities --history --format jsonl -o entities.jsonl
        stet export 5 --format brat -o udhr_eng.ann
        stet export 11 --include-restricted -o restricted-11.json
    """
    text_path = None
    if fmt == "brat":
        if output == "-" or not output.endswith(".ann"):
            raise click.UsageError("brat needs -o NAME.ann: the document's text is written "
                                   "beside it as NAME.txt")
        text_path = output[:-len(".ann")] + ".txt"
    archive = open_archive(db_path, readonly=True)
    options = dict(fmt=fmt, layer=layer, history=with_history,
                   include_restricted=include_restricted)
    if output == "-":
        summary = archive.export(sys.stdout, docs, **options)
    elif text_path is not None:
        with write_whole(output) as out, write_whole(text_path) as text:
            summary = archive.export(out, docs, **options)
            text.write(archive.text(docs[0]))  # exactly one DOC: export checked it
    else:
        with write_whole(output) as out:  # the file appears only when complete
            summary = archive.export(out, docs, **options)
    if summary["left_out"]:
        n = summary["left_out"]
        click.echo(f"Warning: left out {n} annotation{'' if n == 1 else 's'} on restricted "
                   "documents (--include-restricted to include them)", err=True)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--skip-missing", is_flag=True,
              help="Leave out annotations on documents this archive does not hold (counted).")
@by_option
@json_option
@silent_option
@db_option
@errors
def import_(paths, skip_missing, by, as_json, silent, db_path):
    """Import W3C Web Annotations (JSON-LD collections or JSON Lines) from files and folders.

    Documents are found by the SHA-256 of their raw bytes; spans are re-anchored by position
    and the quote is checked. Importing the same annotations again adds nothing; annotations
    the archive already holds but with other content are kept as the archive has them, with
    a warning on stderr. A malformed file, a time in the future (beyond 5 minutes of clock
    skew) or a revision dated before the one it follows is refused whole, and then nothing
    is imported. So is a file with annotations on documents this archive does not hold
    (the error says how many), unless --skip-missing: then the others are imported and
    those are counted. A progress bar on a terminal counts the bytes read (-s: none).

    \b
    Example:
        stet import annotations/
        stet import entities.jsonl --json
        stet import notes.jsonl --skip-missing
    """
    # Many short-lived objects and no cycles: the command pauses the collector for its run
    # (about a sixth of an import's time); the library never does it in a caller's process.
    with collector_paused():
        results = open_archive(db_path).import_(
            paths, by=user(by), progress=progress(silent=silent, label="Importing"),
            skip_missing=skip_missing)
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
                   f"revisions, {r['skipped']} already here"
                   + (f", {r['missing']} left out (their documents are not in this archive)"
                      if r.get("missing") else ""))
