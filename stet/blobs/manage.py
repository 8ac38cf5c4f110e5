"""``stet store``: choose where new raw bytes go, move the bytes already in the file out, and
remove what an interrupted write left in a store.

Each runs under the archive's write lock (``BEGIN IMMEDIATE``) while it writes to or deletes
from a store, as an ingest does while it writes objects: so ``gc``, which holds it while it
lists and deletes, never sees an object whose rows are about to commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from typing import Any, Callable, Iterator

from ..errors import InvalidInput, StetError
from ..hashing import CHUNK_SIZE
from ..provenance import Chain
from . import current_store, packs, store_for
from .check import unreferenced
from .s3 import Location

#: The marker a store-backed archive writes at its location: one prefix, one archive (gc
#: removes what its archive does not refer to, so two archives must never share one).
MARKER = "stet-archive.json"
#: A migration's pack holds at most this many blobs, or this many bytes; larger blobs are
#: objects of their own, uploaded in parts from the file.
PACK_FILES = 1000
PACK_BYTES = 64 * CHUNK_SIZE
LARGE = 32 * CHUNK_SIZE


def _identity(conn) -> str:
    """An archive's identity: the hash of its first event."""
    return conn.execute("SELECT hash FROM events WHERE seq = 1").fetchone()[0]


def set_store(conn, url: str, *, by: str) -> dict[str, Any]:
    """Make new raw bytes go to ``url`` (``s3://BUCKET/PREFIX``, or ``file``: the archive
    file again). Checks that the store answers and is this archive's (or nobody's) before
    the ``store-set`` event commits. The event's record."""
    if url == "file":
        location = None
    else:
        location = str(Location.parse(url))
    if location == current_store(conn):
        raise InvalidInput(f"the store is already {location or 'the archive file'}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        event = Chain(conn).append(actor=by, action="store-set", subject=None, document=None,
                                   details={"store": location})
        if location is not None:
            claim(store_for(location), _identity(conn))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return event


def claim(store, identity: str) -> None:
    """The location's marker names this archive (written when absent); StetError when it
    names another archive."""
    found = store.get_bytes(MARKER)
    if found is not None:
        try:
            owner = json.loads(found).get("archive")
        except (ValueError, AttributeError):
            owner = None
        if owner != identity:
            raise StetError(f"{store} holds another archive's objects (its {MARKER} names "
                            "another archive): give each archive a prefix of its own")
        return
    store.put_bytes(MARKER, json.dumps({"stet": "archive", "archive": identity}).encode(),
                    content_type="application/json")


def pending(conn) -> tuple[int, int]:
    """How many blobs have their bytes in the file as chunks, and how many bytes."""
    return conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM blobs b WHERE storage = 'chunks' "
        "AND NOT EXISTS (SELECT 1 FROM blob_objects o WHERE o.sha256 = b.sha256)").fetchone()


def migrate(conn, *, by: str, progress: Callable | None = None) -> dict[str, Any]:
    """Move every blob kept in the file as chunks to the current store: read from the file
    and checked against its SHA-256, written (a pack per batch of small ones, an object
    per large one), read back from the store and checked again, and only then recorded
    (``store-migrate`` event, ``blob_objects`` rows) with its chunks deleted from the file,
    in one transaction per batch. Blobs kept as their text (a UTF-8 file that is its own
    text) stay: their bytes are the text the archive needs anyway. A summary."""
    url = current_store(conn)
    if url is None:
        raise InvalidInput("no object store is set: stet store set s3://BUCKET/PREFIX first")
    store = store_for(url)
    _count, total = pending(conn)
    moved = {"blobs": 0, "bytes": 0, "objects": 0, "store": url}
    with (progress(total) if progress else contextlib.nullcontext(_ignore)) as advance:
        while True:
            conn.execute("BEGIN IMMEDIATE")  # chosen under the lock: no other moves them
            try:
                batch = _next_batch(conn)
                if not batch:
                    conn.execute("ROLLBACK")
                    break
                done = _move(conn, store, url, batch, by)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            moved["blobs"] += len(done)
            moved["bytes"] += sum(size for _, size in done)
            moved["objects"] += 1
            advance(sum(size for _, size in done))
    if moved["blobs"]:
        conn.execute("VACUUM")  # the file gives back the space the chunks held
    return moved


def _ignore(n: int) -> None:
    return None


def _next_batch(conn) -> list[tuple[str, int]]:
    """The next blobs to move: one large one, or small ones up to a pack's bounds."""
    batch: list[tuple[str, int]] = []
    used = 0
    for sha, size in conn.execute(
            "SELECT sha256, size FROM blobs b WHERE storage = 'chunks' AND NOT EXISTS "
            "(SELECT 1 FROM blob_objects o WHERE o.sha256 = b.sha256) ORDER BY rowid"):
        if size >= LARGE:
            if batch:
                break
            return [(sha, size)]
        if batch and (len(batch) >= PACK_FILES or used + size > PACK_BYTES):
            break
        batch.append((sha, size))
        used += size
    return batch


def _chunks(conn, sha: str) -> Iterator[bytes]:
    for (data,) in conn.execute("SELECT data FROM blob_chunks WHERE sha256 = ? ORDER BY seq",
                                (sha,)):
        yield bytes(data)


def _from_file(conn, sha: str, size: int) -> bytes:
    data = b"".join(_chunks(conn, sha))
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
        raise StetError(f"raw bytes {sha[:12]} in the archive file do not match their SHA-256: "
                        "not moved (stet verify names the document)")
    return data


class _ChunkReader(io.RawIOBase):
    """A blob's chunks in the file as a stream (a large blob goes up in parts)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces, self.buffer = pieces, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            piece = next(self.pieces, b"")
            if not piece:
                break
            self.buffer += piece
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _move(conn, store, url: str, batch: list[tuple[str, int]], by: str) -> list[tuple[str, int]]:
    """One batch: written, read back and checked, recorded, deleted from the file."""
    if len(batch) == 1 and batch[0][1] >= LARGE:
        sha, size = batch[0]
        from .s3 import ObjectChanged
        try:
            store.put_file(sha, size, _ChunkReader(_chunks(conn, sha)))
        except ObjectChanged:
            raise StetError(f"raw bytes {sha[:12]} in the archive file do not match their "
                            "SHA-256: not moved (stet verify names the document)") from None
        key, index = store.key(sha), [(sha, 0, size)]
    else:
        key, index = packs.put(store, [(sha, _from_file(conn, sha, size)) for sha, size in batch])
    _read_back(store, key, index)
    event = Chain(conn).append(
        actor=by, action="store-migrate", subject=None, document=None,
        details={"store": url, "key": key, "blobs": [list(entry) for entry in index]})
    conn.executemany('INSERT INTO blob_objects (sha256, store, key, "offset", length, event) '
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [(sha, url, key, offset, length, event["seq"]) for sha, offset, length in index])
    conn.executemany("DELETE FROM blob_chunks WHERE sha256 = ?", [(sha,) for sha, _, _ in index])
    return batch


def _read_back(store, key: str, index: list[tuple[str, int, int]]) -> None:
    """Each blob as the store now has it, against its SHA-256."""
    start, end = index[0][1], index[-1][1] + index[-1][2]
    for (sha, _offset, _length), got, missing in packs.hash_ranges(
            store.read_range(key, start, end - start), start, index):
        if missing or got != sha:
            raise StetError(f"{store}: {key} does not read back as written ({sha[:12]}): "
                            "nothing moved")


def gc(conn, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """The objects no document refers to, in every store the archive has used (left by a
    write interrupted before its rows committed), deleted unless ``dry_run``: under the write
    lock, so no ingest is between writing an object and committing its rows meanwhile. A dry
    run only reads (a read-only connection does): what it lists may include an object an
    ingest running at that moment is about to commit."""
    if dry_run:
        return list(unreferenced(conn))
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = list(unreferenced(conn))
        for item in found:
            store_for(item["store"]).delete_key(item["key"])
    finally:
        conn.execute("ROLLBACK")  # nothing written to the archive
    return found


__all__ = ["MARKER", "claim", "gc", "migrate", "pending", "set_store"]
