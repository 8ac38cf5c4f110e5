"""Commands that hand the archive on: ``bag export`` (BagIt) and ``prov`` (W3C PROV-JSON)."""

from __future__ import annotations

import sys

import click

from ..files import write_whole
from .common import cli, db_option, echo_json, errors, json_option, open_archive, progress, silent_option


@cli.group()
def bag() -> None:
    """BagIt (RFC 8493) bags. To ingest a bag, give its folder to `stet ingest`.

    \b
    Example:
        stet bag export transfer-2026-11/
        stet ingest transfer-2026-11/
    """


@bag.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("docs", nargs=-1)
@click.option("--organization", envvar="STET_ORGANIZATION",
              help="Source-Organization in bag-info.txt ($STET_ORGANIZATION).")
@click.option("--identifier", help="External-Identifier in bag-info.txt (default: a new urn:uuid).")
@click.option("--include-restricted", is_flag=True,
              help="Include restricted documents (and their attachments).")
@json_option
@silent_option
@db_option
@errors
def bag_export(directory, docs, organization, identifier, include_restricted, as_json, silent,
               db_path):
    """Write documents as a BagIt bag in DIRECTORY (new, or an empty folder).

    The payload is the raw bytes of each document (all of them, or each DOC and its
    attachments) under its original file name ("name (2).ext" when names collide),
    with manifest-sha256.txt, manifest-sha512.txt, tag manifests, bag-info.txt and
    stet-documents.jsonl (each document's record as ingested, its current title,
    source and restriction, its events and text). The bag passes `bagit.py --validate`.
    Reading only: the archive records no event.

    Restricted documents (and attachments of restricted messages) are left out, with a
    warning on stderr saying how many, unless --include-restricted is given; naming a
    restricted DOC without it is an error. `stet ingest` of the bag in another archive
    keeps restriction, title, source, message/attachment links and the original
    provenance. A progress bar on a terminal (-s: none).

    \b
    Example:
        stet bag export out/transfer --organization "Field office, Erbil"
        stet bag export out/one 3 sha256:1f2e3d4c
        stet bag export out/all --include-restricted
    """
    summary = open_archive(db_path, readonly=True).bag_export(
        directory, docs, organization=organization, identifier=identifier,
        include_restricted=include_restricted,
        progress=progress(silent=silent, label="Bagging"))
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"bag {summary['path']}: {summary['documents']} documents, "
                   f"{summary['bytes']} bytes")
    if summary["left_out"]:
        n = summary["left_out"]
        click.echo(f"Warning: left out {n} restricted document{'' if n == 1 else 's'} "
                   "(--include-restricted to include them)", err=True)


@cli.command()
@click.argument("doc")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@click.option("--include-restricted", is_flag=True,
              help="Allow a restricted document (and restricted submissions' events).")
@db_option
@errors
def prov(doc, output, include_restricted, db_path):
    """A document's lineage as W3C PROV-JSON.

    Raw bytes and text as entities (the text derived from the bytes by the
    extraction), each ingest as an activity with its agent, each annotation
    revision as an entity attributed to its author. A restricted document, and
    the events of restricted submissions, only with --include-restricted.

    \b
    Example:
        stet prov 3 -o lineage.json
    """
    text = open_archive(db_path, readonly=True).prov(doc, include_restricted=include_restricted)
    if output:
        with write_whole(output) as stream:
            stream.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")
