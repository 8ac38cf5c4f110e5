"""A document's content read back, by resolved id: its text and its raw bytes.

The raw bytes are the blob's chunks (in the file, or as an object in a store:
:mod:`stet.blobs`), or, for a blob stored as ``text`` (see :mod:`stet.store`), the UTF-8 of
the document's text, kept once.
"""

from __future__ import annotations

from typing import Iterator

from . import blobs
from .hashing import CHUNK_SIZE


def text(conn, doc_id: int) -> str:
    """The document's extracted text ("" when it has none)."""
    row = conn.execute("SELECT text FROM texts WHERE document = ?", (doc_id,)).fetchone()
    return row[0] if row else ""


def raw(conn, doc_id: int) -> Iterator[bytes]:
    """The document's raw bytes, chunk by chunk."""
    sha, storage = conn.execute(
        "SELECT d.sha256, b.storage FROM documents d JOIN blobs b ON b.sha256 = d.sha256 "
        "WHERE d.id = ?", (doc_id,)).fetchone()
    if storage == "text":  # the bytes are the text's UTF-8, kept once (see store.py)
        (data,) = conn.execute(
            "SELECT CAST(text AS BLOB) FROM texts WHERE document = ?", (doc_id,)).fetchone()
        for offset in range(0, len(data), CHUNK_SIZE):
            yield bytes(data[offset:offset + CHUNK_SIZE])
        return
    yield from blobs.read(conn, sha)  # its chunks, or its object in the store
