"""Documents out as a bag (see :mod:`stet.bags`): built in a hidden folder beside the target
and renamed into place only when complete; a read of the archive, which records nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from typing import Any, Callable, Iterable

import bagit

from .. import content, store, timeutil
from .._version import __version__
from ..errors import InvalidInput, arg
from .tagfile import TAG_FILE, tag_record

CHECKSUMS = ("sha256", "sha512")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


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


def export(conn, directory: str | os.PathLike, doc_ids: Iterable[int] = (), *, name: str,
           organization: str | None = None, identifier: str | None = None,
           processes: int = 1, include_restricted: bool = False,
           progress: Callable | None = None) -> dict[str, Any]:
    """Write the documents (all, or ``doc_ids``, resolved, with their attachments) as a bag at
    ``directory``, which must not exist or be an empty folder; ``name``: the archive's file
    name, for ``bag-info.txt``. Returns a summary, with ``left_out``: how
    many hidden documents were left out. Hidden documents (restricted now, or an attachment
    of one) are left out unless ``include_restricted``; naming one is an error.
    ``progress``: given twice the payload's bytes, a context manager yielding ``advance(n)``,
    advanced by each document's size as it is written, then by the whole payload once
    bagit has checksummed it."""
    target = os.path.abspath(os.fspath(directory))
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise InvalidInput(f"{directory}: exists and is not an empty folder")
    created = _make_parents(directory, os.path.dirname(target))
    snapshot = not conn.in_transaction  # one read snapshot: what is hidden, and what is written
    if snapshot:
        conn.execute("BEGIN")
    done = False
    try:
        summary = _export(conn, target, doc_ids, name=name, organization=organization,
                          identifier=identifier, processes=processes,
                          include_restricted=include_restricted, progress=progress)
        done = True
        return summary
    finally:
        if snapshot and conn.in_transaction:
            conn.execute("ROLLBACK")  # a read: nothing to keep
        if not done:
            for folder in reversed(created):  # the folders made for a bag that failed
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _make_parents(directory, parent_dir: str) -> list[str]:
    """Create the missing folders above the bag (``out/`` of ``out/transfer-42``), outermost
    first; return those created, for removal if the export fails. A path in the way that is
    not a folder is an error."""
    missing = []
    folder = parent_dir
    while not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise InvalidInput(f"{directory}: {folder} is not a folder")
        missing.append(folder)
        folder = os.path.dirname(folder)
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except OSError as exc:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(made)
            raise InvalidInput(f"{directory}: cannot create {folder}: {exc.strerror}") from None
        created.append(folder)
    return created


def _export(conn, target: str, doc_ids: Iterable[int], *, name: str, organization: str | None,
            identifier: str | None, processes: int, include_restricted: bool,
            progress: Callable | None) -> dict[str, Any]:
    hidden = {row[0] for row in conn.execute(store.HIDDEN_DOCUMENTS)}
    ids, left_out = _selection(conn, doc_ids, set() if include_restricted else hidden)
    counting = (progress(2 * _payload_bytes(conn, ids)) if progress is not None
                else contextlib.nullcontext(lambda n: None))
    with counting as advance:
        return _write_bag(conn, target, ids, hidden, name=name, organization=organization,
                          identifier=identifier, processes=processes,
                          include_restricted=include_restricted, left_out=left_out,
                          advance=advance)


def _payload_bytes(conn, ids: list[int]) -> int:
    total = 0
    for offset in range(0, len(ids), 500):
        part = ids[offset:offset + 500]
        total += conn.execute(f"SELECT coalesce(sum(size), 0) FROM documents WHERE id IN "
                              f"({', '.join('?' * len(part))})", part).fetchone()[0]
    return total


def _write_bag(conn, target: str, ids: list[int], hidden: set[int], *, name: str,
               organization: str | None, identifier: str | None, processes: int,
               include_restricted: bool, left_out: int,
               advance: Callable[[int], Any]) -> dict[str, Any]:
    seq, head = conn.execute(
        "SELECT coalesce(max(seq), 0), coalesce((SELECT hash FROM events ORDER BY seq DESC "
        "LIMIT 1), '') FROM events").fetchone()
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.partial-",
                            dir=os.path.dirname(target))
    try:
        taken: set[str] = set()
        records = []
        total = 0
        for doc_id in ids:
            record = tag_record(conn, doc_id, hidden, include_restricted)
            payload = payload_name(record["document"]["filename"], taken)
            record = {"payload": f"data/{payload}", **record}
            with open(os.path.join(work, payload), "wb") as out:
                for block in content.raw(conn, doc_id):
                    out.write(block)
            total += record["document"]["size"]
            records.append(record)
            advance(record["document"]["size"])
        bag_info = {
            "Source-Organization": organization or "unknown",
            "Bagging-Date": timeutil.now().strftime("%Y-%m-%d"),
            "External-Identifier": identifier or f"urn:uuid:{uuid.uuid4()}",
            "Bag-Software-Agent": f"stet {__version__} (bagit.py {bagit.VERSION})",
            "Internal-Sender-Description":
                f"{len(records)} documents from the stet archive {name}",
            "Stet-Event-Chain-Head": f"{seq} {head}".strip(),
        }
        bag = bagit.make_bag(work, bag_info, processes=processes, checksums=list(CHECKSUMS))
        advance(total)
        with open(os.path.join(work, TAG_FILE), "w", encoding="utf-8", newline="\n") as tag:
            for record in records:
                tag.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        bag.save()  # the tag manifests again, now covering the stet tag file
        if os.path.isdir(target):
            os.rmdir(target)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"path": target, "documents": len(records), "bytes": total,
            "payload": [record["payload"] for record in records],
            "external_identifier": bag_info["External-Identifier"], "left_out": left_out}


def _selection(conn, doc_ids: Iterable[int], hidden: set[int]) -> tuple[list[int], int]:
    """All documents, or the given ones and (recursively) their attachments, in id order,
    without the ``hidden`` ones; and how many hidden ones were left out. Naming a hidden
    document is an error."""
    named = list(doc_ids)
    if not named:
        every = [row[0] for row in conn.execute("SELECT id FROM documents ORDER BY id")]
        kept = [doc_id for doc_id in every if doc_id not in hidden]
        return kept, len(every) - len(kept)
    for doc_id in named:
        if doc_id in hidden:
            raise InvalidInput(f"document {doc_id} is restricted: give "
                               f"{arg('include_restricted')} to export it")
    chosen = set(named)
    frontier = set(chosen)
    while frontier:
        marks = ",".join("?" * len(frontier))
        children = {row[0] for row in conn.execute(
            f"SELECT id FROM documents WHERE parent IN ({marks})", tuple(frontier))}
        frontier = children - chosen
        chosen |= children
    kept = sorted(chosen - hidden)
    return kept, len(chosen) - len(kept)
