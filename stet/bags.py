"""BagIt (RFC 8493) out and in, with the Library of Congress ``bagit`` package.

Export (:func:`export`) writes the raw documents as the payload under their original names,
``manifest-sha256.txt`` and ``manifest-sha512.txt``, the tag manifests, ``bag-info.txt`` and
the tag file :data:`TAG_FILE` (one JSON object a line: each document's record, provenance
events and text). The bag is built in a hidden folder beside ``DIR`` and renamed into place
only when complete, so a failed export leaves nothing behind. Export reads the archive and
writes nothing to it (no event is recorded: the archive does not change).

Ingest (:func:`open_bag`) validates a bag completely before anything is written: the
structure, ``bagit.txt`` (strictly: ``Name: value``, one space), ``fetch.txt``, completeness
(every payload file in every manifest and on disk), every checksum of every manifest and
tag manifest, and the Payload-Oxum; all problems are collected and reported in one
:class:`~stet.errors.InvalidInput` naming the failing files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import bagit

from . import __version__, timeutil
from .errors import InvalidInput

#: The stet tag file in an exported bag: one JSON object per document, in payload order.
TAG_FILE = "stet-documents.jsonl"
CHECKSUMS = ("sha256", "sha512")

# bagit logs each problem as it finds it; stet reports them once, itself.
_bagit_log = logging.getLogger("bagit")
_bagit_log.addHandler(logging.NullHandler())
_bagit_log.propagate = False

_BAGIT_TXT_LINE = re.compile(r"(BagIt-Version|Tag-File-Character-Encoding): (\S.*)")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


# -- detection and validation -----------------------------------------------------------------


def is_bag(path: str | os.PathLike) -> bool:
    """A folder with ``bagit.txt`` at its top, or one that looks like a bag without it
    (a ``data`` folder beside a ``manifest-*.txt``), which validation will then refuse."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "bagit.txt")):
        return True
    if not os.path.isdir(os.path.join(path, "data")):
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return "data" in names and any(re.fullmatch(r"manifest-\w+\.txt", n) for n in names)


@dataclass
class ValidBag:
    """A bag that passed validation: its payload files and what to record of it."""

    path: str
    version: str
    info: dict[str, Any]
    payload: list[str] = field(default_factory=list)  # paths relative to the bag, sorted

    def details(self, relative: str) -> dict[str, Any]:
        """The provenance recorded with one payload file's ingest event."""
        return {"bag": {"path": self.path, "file": relative, "bagit_version": self.version,
                        "bag_info": self.info}}


def open_bag(path: str | os.PathLike, *, processes: int = 1) -> ValidBag:
    """Validate the bag at ``path`` completely; raise InvalidInput naming every failing file."""
    path = os.path.abspath(os.fspath(path))
    shown = os.fspath(path)
    prefix = f"invalid bag {shown}"
    if not os.path.isfile(os.path.join(path, "bagit.txt")):
        raise InvalidInput(f"{prefix}: bagit.txt is missing")
    _check_bagit_txt(path, prefix)
    try:
        bag = bagit.Bag(path)
        bag._validate_structure()
        bag._validate_bagittxt()
        bag.validate_fetch()
    except bagit.BagError as exc:
        raise InvalidInput(f"{prefix}: {_strip(str(exc), path)}") from None
    problems: dict[str, list[str]] = {}
    try:
        bag._validate_completeness()
    except bagit.BagValidationError as exc:
        _collect(exc, problems)
    try:
        bag._validate_entries(processes)
    except bagit.BagValidationError as exc:
        _collect(exc, problems)
    payload = sorted(bag.payload_files())
    for relative in payload:
        real = os.path.realpath(os.path.join(path, relative))
        if not real.startswith(os.path.realpath(path) + os.sep):
            problems.setdefault(relative, []).append("a symbolic link that leads out of the bag")
    for reasons in problems.values():  # a missing file's checksums cannot match: say missing
        if "in the manifest, missing on disk" in reasons:
            reasons[:] = [r for r in reasons if not r.endswith(" mismatch")]
    oxum = _oxum_problem(bag, path, payload)
    if problems or oxum:
        listed = [f"{name} ({', '.join(sorted(reasons))})" for name, reasons in sorted(problems.items())]
        if len(listed) > 20:
            listed = listed[:20] + [f"and {len(listed) - 20} more"]
        if oxum:
            listed.append(oxum)
        raise InvalidInput(f"{prefix}: " + "; ".join(listed))
    return ValidBag(path, ".".join(map(str, bag.version_info)), dict(bag.info), payload)


def _check_bagit_txt(path: str, prefix: str) -> None:
    with open(os.path.join(path, "bagit.txt"), "rb") as stream:
        raw = stream.read(4096)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{prefix}: bagit.txt is not UTF-8") from None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line and not _BAGIT_TXT_LINE.fullmatch(line.lstrip("\ufeff")):
            raise InvalidInput(f"{prefix}: bagit.txt: malformed line {line!r}")


def _collect(exc: "bagit.BagValidationError", problems: dict[str, list[str]]) -> None:
    for detail in exc.details or []:
        if isinstance(detail, bagit.ChecksumMismatch):
            reason = f"{detail.algorithm} mismatch"
        elif isinstance(detail, bagit.FileMissing):
            reason = "in the manifest, missing on disk"
        elif isinstance(detail, bagit.UnexpectedFile):
            reason = "on disk, not in the manifest"
        else:
            reason = str(detail)
        problems.setdefault(str(getattr(detail, "path", "?")), []).append(reason)
    if not exc.details:
        problems.setdefault("bag", []).append(exc.message)


def _oxum_problem(bag, path: str, payload: list[str]) -> str | None:
    oxum = bag.info.get("Payload-Oxum")
    if oxum is None:
        return None
    if isinstance(oxum, list):
        oxum = oxum[0]
    octets, _, files = oxum.partition(".")
    if not (octets.isdigit() and files.isdigit()):
        return f"malformed Payload-Oxum {oxum!r}"
    size = sum(os.stat(os.path.join(path, p)).st_size for p in payload)
    if (int(octets), int(files)) != (size, len(payload)):
        return (f"Payload-Oxum {oxum} does not match the payload "
                f"({size} bytes in {len(payload)} files)")
    return None


def _strip(message: str, path: str) -> str:
    return message.replace(path + os.sep, "").replace(path, ".")


# -- export -----------------------------------------------------------------------------------


def payload_name(filename: str, taken: set[str]) -> str:
    """A safe, unique payload file name from a document's original name: no folders, no
    control characters; a name already used (ignoring case and Unicode normalization) gets
    `` (2)``, `` (3)``... before its extension."""
    name = _UNSAFE.sub("_", filename).strip() or "document"
    if name in (".", ".."):
        name = name.replace(".", "_")
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    candidate, n = name, 1
    while _key(candidate) in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{extension}"
    taken.add(_key(candidate))
    return candidate


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def export(archive, directory: str | os.PathLike, refs: Iterable[str | int] = (), *,
           organization: str | None = None, identifier: str | None = None,
           processes: int = 1) -> dict[str, Any]:
    """Write the documents (all, or ``refs`` with their attachments) as a bag at ``directory``,
    which must not exist or be an empty folder. Returns a summary."""
    target = os.path.abspath(os.fspath(directory))
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise InvalidInput(f"{directory}: exists and is not an empty folder")
    parent_dir = os.path.dirname(target)
    if not os.path.isdir(parent_dir):
        raise InvalidInput(f"{directory}: the folder {parent_dir} does not exist")
    ids = _selection(archive, refs)
    conn = archive.conn
    seq, head = conn.execute(
        "SELECT coalesce(max(seq), 0), coalesce((SELECT hash FROM events ORDER BY seq DESC "
        "LIMIT 1), '') FROM events").fetchone()
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.partial-", dir=parent_dir)
    try:
        taken: set[str] = set()
        records = []
        total = 0
        for doc_id in ids:
            record = archive.document(doc_id)
            name = payload_name(record["filename"], taken)
            with open(os.path.join(work, name), "wb") as out:
                for block in archive.raw(doc_id):
                    out.write(block)
            total += record["size"]
            records.append((name, record))
        bag_info = {
            "Source-Organization": organization or "unknown",
            "Bagging-Date": timeutil.now().strftime("%Y-%m-%d"),
            "External-Identifier": identifier or f"urn:uuid:{uuid.uuid4()}",
            "Bag-Software-Agent": f"stet {__version__} (bagit.py {bagit.VERSION})",
            "Internal-Sender-Description":
                f"{len(records)} documents from the stet archive {os.path.basename(archive.path)}",
            "Stet-Event-Chain-Head": f"{seq} {head}".strip(),
        }
        bag = bagit.make_bag(work, bag_info, processes=processes, checksums=list(CHECKSUMS))
        with open(os.path.join(work, TAG_FILE), "w", encoding="utf-8", newline="\n") as tag:
            for name, record in records:
                tag.write(json.dumps(_tag_record(archive, name, record), ensure_ascii=False,
                                     sort_keys=True) + "\n")
        bag.save()  # the tag manifests again, now covering the stet tag file
        if os.path.isdir(target):
            os.rmdir(target)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"path": target, "documents": len(records), "bytes": total,
            "payload": ["data/" + name for name, _ in records],
            "external_identifier": bag_info["External-Identifier"]}


def _selection(archive, refs: Iterable[str | int]) -> list[int]:
    """All documents, or the given ones and (recursively) their attachments, in id order."""
    conn = archive.conn
    refs = list(refs)
    if not refs:
        return [row[0] for row in conn.execute("SELECT id FROM documents ORDER BY id")]
    chosen = {archive.resolve(ref) for ref in refs}
    frontier = set(chosen)
    while frontier:
        marks = ",".join("?" * len(frontier))
        children = {row[0] for row in conn.execute(
            f"SELECT id FROM documents WHERE parent IN ({marks})", tuple(frontier))}
        frontier = children - chosen
        chosen |= children
    return sorted(chosen)


def _tag_record(archive, name: str, record: dict[str, Any]) -> dict[str, Any]:
    events = archive.log(record["id"])
    return {
        "payload": f"data/{name}",
        "document": {k: record[k] for k in (
            "id", "sha256", "title", "filename", "media_type", "size", "source", "restricted",
            "ingested_by", "ingested_at", "parent", "supersedes")},
        "text": {
            "sha256": record["text_sha256"], "length": record["text_length"],
            "extractor": record["extractor"], "extractor_version": record["extractor_version"],
            "encoding": record["encoding"], "warning": record["warning"],
            "text": archive.text(record["id"]),
        },
        "events": events,
    }
