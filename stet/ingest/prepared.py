"""Preparing a file: read it, hash it, sniff its media type, extract its text. Pure.

Nothing here touches a database, so it runs wherever it pays: in the main process, in the
read-ahead worker (:mod:`.readahead`) or in a pool's workers (:mod:`.pool`). A file up to
:data:`SMALL_FILE` bytes is read whole (one read, one hash) and its bytes kept; a larger one
is hashed in one streaming pass and only its head (or, up to the extraction limit, its
whole) is read for extraction: the writer streams its bytes from the path (hashing them
again) when it stores it.

(The module is ``prepared``, not ``prepare``, so that ``stet.ingest.prepare`` stays the
function.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..bags import BagFile
from ..extract import EXTRACT_LIMIT, Extraction, detect_media_type, extract, too_large
from ..hashing import CHUNK_SIZE, sha256_bytes, sha256_file, sha256_text
from ..system import open_regular, reason

#: Files up to this size are read whole (one read, one hash); larger ones are streamed.
SMALL_FILE = 8 * CHUNK_SIZE


@dataclass
class Prepared:
    """One file read, hashed and extracted, ready to store.

    :func:`prepare` fills the first group wherever it runs; a worker that sends the item
    back may drop a verbatim text (``text_length``); the main process adds the second group
    from the file's :class:`~.paths.Entry` before the writer gets it."""

    # -- what preparing found (every path) --
    path: str
    filename: str
    sha256: str = ""
    size: int = 0
    media_type: str = "application/octet-stream"
    #: The raw bytes of a small file (in the read-ahead path, a view of the shared region
    #: they came in); None for a large file, which the writer streams from its path.
    data: bytes | memoryview | None = None
    extraction: Extraction | None = None
    error: str | None = None
    parts: list["Prepared"] = field(default_factory=list)  # attachments, prepared as files
    #: The text's SHA-256, computed right after preparing (see :func:`hash_texts`).
    text_sha256: str | None = None
    #: The absolute path recorded in the ingest event (worked out where it was prepared).
    location: str | None = None
    #: Set by a worker (pool or read-ahead) that dropped a text before sending the item back
    #: (a verbatim one: the bytes are the text; another: :attr:`text_utf8` is): its length
    #: in code points.
    text_length: int | None = None
    #: The UTF-8 of a text that is not the raw bytes, made where the text was hashed (see
    #: :func:`hash_texts`): the writer stores it as is (SQLite keeps TEXT as UTF-8), so the
    #: one writer never encodes a text, and a worker sends bytes, not a string to rebuild.
    text_utf8: bytes | None = None

    # -- given in the main process, from its Entry --
    details: dict[str, Any] = field(default_factory=dict)  # provenance (a bag's info)
    #: The public name of the file (:attr:`Entry.name`); an attachment's is its message's
    #: with ``#`` and its own name.
    name: str | None = None
    #: The bag it is a payload file of (:attr:`Entry.bag_file`).
    bag_file: BagFile | None = None


def prepare(path: str, location: str | None = None) -> Prepared:
    """Read, hash, sniff and extract one file. Never raises for a bad file. ``location``:
    its absolute path, if known (recorded in its event). Anything but a regular file is
    refused (``not a regular file``) without waiting on it."""
    item = Prepared(path=path, filename=os.path.basename(path),
                    location=printable(location or os.path.abspath(path)))
    try:
        with open_regular(path) as stream:
            info = os.fstat(stream.fileno())
            if info.st_size <= SMALL_FILE:
                data = stream.read()
                item.data = data
                item.sha256 = sha256_bytes(data)
                item.size = len(data)
            else:
                item.sha256, item.size = sha256_file(stream)
                stream.seek(0)
                # the whole file to extract it, or only its head to sniff what it is
                data = stream.read(EXTRACT_LIMIT + 1 if item.size <= EXTRACT_LIMIT else 64 * 1024)
    except OSError as exc:
        item.error = f"{path}: {reason(exc)}"
        return item
    fill(item, data)
    return item


def prepare_bytes(data: bytes, filename: str, path: str) -> Prepared:
    """Prepare bytes that are not a file of their own (an attachment inside a message)."""
    item = Prepared(path=path, filename=filename, data=data, sha256=sha256_bytes(data), size=len(data))
    fill(item, data)
    return item


def fill(item: Prepared, data: bytes) -> None:
    """Media type, text and parts of a prepared item, from its bytes (or their head)."""
    item.media_type = detect_media_type(data[:8192], item.filename)
    # ``data`` is only the head of a file over the limit: judge by the file's size
    item.extraction = too_large(item.size) or extract(data, item.media_type)
    for index, (name, part) in enumerate(item.extraction.parts):
        item.parts.append(prepare_bytes(part, name or f"part-{index + 1}", f"{item.path}#{name}"))
        if item.location:
            item.parts[-1].location = printable(f"{item.location}#{name}")
    item.extraction.parts = []


def hash_texts(item: Prepared) -> Prepared:
    """Hash the texts of an item and its parts where it was prepared (in a worker, when there
    are workers), not in the one writer, keeping each text's UTF-8 (:attr:`Prepared.text_utf8`)
    for the writer to store. A verbatim text held with its bytes needs no hash: it is the
    bytes' hash."""
    for current in _with_parts(item):
        ext = current.extraction
        if ext is not None and ext.text and not (ext.verbatim and current.data is not None):
            try:
                current.text_utf8 = ext.text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: hashed as ever, stored as a string
                current.text_sha256 = sha256_text(ext.text)
            else:
                current.text_sha256 = sha256_bytes(current.text_utf8)
    return item


def drop_verbatim_texts(item: Prepared) -> None:
    """Before a worker sends an item back: a text that travels as bytes anyway (a verbatim
    one is the raw bytes; another one's UTF-8 is :attr:`Prepared.text_utf8`) is dropped, its
    length kept; the writer stores those bytes as the text."""
    for current in _with_parts(item):
        ext = current.extraction
        if ext is not None and ((current.data is not None and ext.verbatim)
                                or current.text_utf8 is not None):
            current.text_length = len(ext.text)
            ext.text = ""


def _with_parts(item: Prepared) -> list[Prepared]:
    """An item and its parts, and theirs."""
    found, pending = [], [item]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.parts)
    return found


def printable(text: str) -> str:
    """Text that can be stored and printed. A file name that is not UTF-8 comes from the
    file system with its bytes kept as lone surrogates, which SQLite and a UTF-8 terminal
    refuse: those bytes are shown as ``\\xNN`` escapes instead (``caf\\xe9.txt``). The file
    itself is still read through its real name."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
