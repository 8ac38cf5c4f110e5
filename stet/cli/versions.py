"""Document versions: ``stet reanchor`` and ``stet versions``."""

from __future__ import annotations

import click

from ..annotations.versions import summary_line
from .common import by_option, cli, db_option, echo_json, errors, json_option, open_archive, user
from .output import output_options, write


def carried_line(summary: dict) -> str:
    """What a carry did, for people; where something needs a look, the command to see it."""
    line = "  " + summary_line(summary)
    if summary["event"] is not None and (summary["fuzzy"] or summary["orphaned"]):
        which = "orphaned" if summary["orphaned"] else "fuzzy"
        line += f"; to check: stet annotations {summary['to']} --anchoring {which}"
    return line


@cli.command()
@click.argument("new")
@click.option("--from", "source", metavar="DOC",
              help="The older version to carry from (default: the document NEW supersedes).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), metavar="X",
              help="The least score (0-1) at which a changed passage is placed approximately "
                   "(fuzzy), not orphaned (default 0.75).")
@by_option
@json_option
@db_option
@errors
def reanchor(new, source, threshold, by, as_json, db_path):
    """Carry the annotations of an older version to NEW, and try its orphans again.

    Each active annotation of the older version not yet carried becomes an
    annotation on NEW with the same body, tags, layer, author and times, placed
    exact (its quote where its position and context say), fuzzy (the best
    approximate match, scored 0-1, at or above the threshold) or orphaned (kept,
    with no span: stet annotations NEW --anchoring orphaned). Replies follow their
    parent. An orphan nobody has revised since is placed if it now can (a
    revision by --by). The older version's annotations stay as they were. One
    reanchor event records it all; nothing is carried twice. `stet ingest NEW
    --supersedes DOC` does this already: run it again to lower the threshold, or
    after annotating the older version.

    \b
    Example:
        stet reanchor 8
        stet reanchor 8 --from 3 --threshold 0.6 --json
    """
    summary = open_archive(db_path).reanchor(new, source=source, threshold=threshold,
                                             by=user(by))
    if as_json:
        echo_json(summary)
    else:
        click.echo(carried_line(summary).strip())


def _version_row(v: dict) -> dict:
    return {"id": v["id"], "supersedes": v["supersedes"], "title": v["title"],
            "ingested_at": v["ingested_at"], "restricted": v["restricted"],
            "annotations": v["annotations"], "carried": v["carried"]}


@cli.command()
@click.argument("doc")
@output_options
@db_option
@errors
def versions(doc, fmt, db_path):
    """The versions of DOC (given any of them), oldest first.

    Each with the document it supersedes, its current title, when it was
    ingested, whether it is restricted, how many active annotations it has and
    how many of them were carried from an older version. A table for people, or
    --json, --nl, --csv, --tsv.

    \b
    Example:
        stet versions 8
    """
    write(open_archive(db_path, readonly=True).versions(doc), fmt, table=_version_row)
