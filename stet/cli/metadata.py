"""Commands that change a document's restriction and metadata: each one an event."""

from __future__ import annotations

import click

from .common import cli, echo_json, open_archive, reason_options, user


def _report(result, as_json: bool, message: str) -> None:
    if as_json:
        echo_json(result)
        return
    click.echo(message)
    for other in result["changed"][1:]:
        click.echo(f"document {other}: unrestricted with it (an attachment restricted only "
                   "because it was)")


@cli.command()
@click.argument("doc")
@reason_options
def restrict(doc, reason, by, as_json, db_path):
    """Withhold a document, and its attachments, from the public.

    An event in the chain: the next public snapshot (stet publish, stet serve)
    leaves the document out, with its text, bytes, annotations and events;
    exports leave it out unless given --include-restricted.

    \b
    Example:
        stet restrict 6 --reason "names a witness"
    """
    result = open_archive(db_path).restrict(doc, reason=reason, by=user(by))
    _report(result, as_json, f"document {result['document']}: restricted (event {result['event']})")


@cli.command()
@click.argument("doc")
@reason_options
def unrestrict(doc, reason, by, as_json, db_path):
    """Make a restricted document public again.

    An event in the chain; the next public snapshot includes the document. The
    attachments that were restricted only because their message was are
    unrestricted with it; one restricted on its own stays restricted.

    \b
    Example:
        stet unrestrict 6 --reason "consent given, 2026-11-30"
    """
    result = open_archive(db_path).unrestrict(doc, reason=reason, by=user(by))
    _report(result, as_json,
            f"document {result['document']}: unrestricted (event {result['event']})")


@cli.command()
@click.argument("doc")
@click.option("--title", help="The corrected title.")
@click.option("--source", help="The corrected source (an empty value clears it).")
@reason_options
def edit(doc, title, source, reason, by, as_json, db_path):
    """Correct a document's title or source.

    A correction is an event: the old value stays in the record (stet show DOC
    --history lists every value, with who set it, when and why). The raw bytes
    and the text never change.

    \b
    Example:
        stet edit 1 --title "Press release, Geneva, 13 August 2014" --reason "shorter"
    """
    result = open_archive(db_path).edit(doc, title=title, source=source, reason=reason,
                                        by=user(by))
    _report(result, as_json, f"document {result['document']}: edited (event {result['event']})")
