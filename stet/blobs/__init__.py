"""Where raw bytes live: in the archive file (the embedded default), or as objects in an
S3-compatible store (``stet store set s3://BUCKET/PREFIX``).

The store an archive writes new bytes to is a setting of the chain: the latest ``store-set``
event (``details.store``: a location, or None for the file). A blob whose bytes are in a
store has a ``blob_objects`` row (store, key, offset, length, and the event that recorded
it): they are read from there, and from nowhere else. Small files of one ingest batch go
into one *pack* (:mod:`.packs`: one object, one request, as restic packs its blobs); a large
file is an object of its own, uploaded in parts. Every object is written, and confirmed, in
the ingest's transaction before the rows that refer to it commit: a crash leaves at most an
object nothing refers to, which ``stet verify`` notes and ``stet store gc`` removes.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from ..hashing import CHUNK_SIZE
from .s3 import Location, ObjectStore, StoreError

__all__ = ["Location", "ObjectStore", "StoreError", "current_store", "located", "read",
           "store_for"]

_stores: dict[str, ObjectStore] = {}


def store_for(url: str) -> ObjectStore:
    """The :class:`ObjectStore` of a location, one per location in this process."""
    if url not in _stores:
        _stores[url] = ObjectStore(url)
    return _stores[url]


def current_store(conn) -> str | None:
    """The location new raw bytes go to (None: the archive file), from the chain."""
    try:
        row = conn.execute("SELECT details FROM events WHERE action = 'store-set' "
                           "ORDER BY seq DESC LIMIT 1").fetchone()
    except Exception:  # an archive being created
        return None
    if row is None:
        return None
    try:
        details = json.loads(row[0])
    except ValueError:
        return None
    store = details.get("store") if isinstance(details, dict) else None
    return store if isinstance(store, str) else None


def located(conn, sha256: str) -> dict[str, Any] | None:
    """Where a blob's bytes are in a store (``store``, ``key``, ``offset``, ``length``),
    or None when they are in the file."""
    try:
        row = conn.execute('SELECT store, key, "offset", length FROM blob_objects '
                           "WHERE sha256 = ?", (sha256,)).fetchone()
    except Exception as exc:  # an archive from before m008 (a snapshot being read)
        if "no such table" in str(exc):
            return None
        raise
    if row is None:
        return None
    return {"store": row[0], "key": row[1], "offset": row[2], "length": row[3]}


def read(conn, sha256: str) -> Iterator[bytes]:
    """A blob's raw bytes in pieces of at most CHUNK_SIZE, wherever they are: its chunks in
    the file, or its object's range in the store (streamed)."""
    where = located(conn, sha256)
    if where is None:
        for (data,) in conn.execute(
                "SELECT data FROM blob_chunks WHERE sha256 = ? ORDER BY seq", (sha256,)):
            yield bytes(data)
        return
    yield from read_object(where)


def read_object(where: dict[str, Any]) -> Iterator[bytes]:
    """The bytes of a ``blob_objects`` location, streamed in pieces of at most CHUNK_SIZE."""
    location = Location.parse(where["store"])
    yield from store_for(str(location)).read_range(where["key"], where["offset"], where["length"])


def chunk_count(size: int) -> int:
    return (size + CHUNK_SIZE - 1) // CHUNK_SIZE
