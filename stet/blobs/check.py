"""``stet verify``'s look at the object store: every object a blob is in, streamed once and
each blob's range hashed (a pack is read whole, not once per file in it), each
``blob_objects`` row held to the event that recorded it; and the objects under each store
that nothing refers to (a write interrupted before its rows committed), which are noted, not
problems: ``stet store gc`` removes them.

Memory is flat: rows come in key order from the index, and objects stream in pieces.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Iterator

from .s3 import Location, StoreError
from . import packs, store_for

_ROWS = ('SELECT o.sha256, o.store, o.key, o."offset", o.length, o.event, d.id, b.size, '
         "(SELECT count(*) FROM blob_chunks c WHERE c.sha256 = o.sha256) "
         "FROM blob_objects o LEFT JOIN documents d ON d.sha256 = o.sha256 "
         "LEFT JOIN blobs b ON b.sha256 = o.sha256 "
         'ORDER BY o.store, o.key, o."offset"')


def _name(doc_id: Any, sha: str) -> str:
    return f"document {doc_id} (sha256 {str(sha)[:12]})" if doc_id is not None \
        else f"blob {str(sha)[:12]} (no document)"


def check_objects(conn) -> Iterator[str]:
    """Every problem with the raw bytes kept in object stores, one line each."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'blob_objects'").fetchone():
        return
    group: list[tuple] = []
    current: tuple[str, str] | None = None
    events = _Events(conn)
    for row in conn.execute(_ROWS):
        sha, store, key, offset, length, event, doc_id, size, chunks = row
        name = _name(doc_id, sha)
        yield from events.check(name, sha, store, key, offset, length, event)
        if size is not None and length != size:
            yield f"{name}: its object range is {length} bytes, its blob {size}"
        if chunks:
            yield f"{name}: {chunks} chunks still in the file beside its object in the store"
        if (store, key) != current:
            yield from _check_object(current, group)
            current, group = (store, key), []
        group.append((sha, offset, length, name))
    yield from _check_object(current, group)


def check_objects_alongside(conn) -> Callable[[], Iterator[str]]:
    """:func:`check_objects` started now in a thread of its own, on a connection of its own,
    so that reading the store (network waits) overlaps the rest of ``stet verify`` (reading
    the file, hashing texts); the call returned waits for it and yields its problems. For a
    file-less connection, or an archive with nothing in a store, it runs when called."""
    path = next((p for _, name, p in conn.execute("PRAGMA database_list") if name == "main"), "")
    try:
        placed = conn.execute("SELECT 1 FROM blob_objects LIMIT 1").fetchone()
    except Exception:  # a damaged or older schema: the schema check says so
        placed = None
    if not path or not placed:
        return lambda: check_objects(conn)
    problems: list[str] = []
    failed: list[BaseException] = []

    def run() -> None:
        from .. import store
        try:
            other = store.connect(path, mode="read", check=False).conn
            try:
                problems.extend(check_objects(other))
            finally:
                other.close()
        except Exception as exc:  # reported by verify's guard, in its place
            failed.append(exc)

    thread = threading.Thread(target=run, name="stet-verify-objects", daemon=True)
    thread.start()

    def finish() -> Iterator[str]:
        thread.join()
        yield from problems
        if failed:
            raise failed[0]

    return finish


def _check_object(where: tuple[str, str] | None, group: list[tuple]) -> Iterator[str]:
    """Stream one object and hash each blob's range in it (in offset order)."""
    if where is None or not group:
        return
    store_url, key = where
    try:
        store = store_for(str(Location.parse(store_url)))
    except Exception as exc:
        for _, _, _, name in group:
            yield f"{name}: its store {store_url!r} is not usable ({exc})"
        return
    contiguous = all(a[1] + a[2] <= b[1] for a, b in zip(group, group[1:]))
    if not contiguous:  # overlapping ranges (no writer makes them): each read on its own
        for item in group:
            yield from _check_ranges(store, key, [item], item[1])
        return
    yield from _check_ranges(store, key, group, group[0][1])


def _check_ranges(store, key: str, group: list[tuple], start: int) -> Iterator[str]:
    end = group[-1][1] + group[-1][2]
    problems: list[str] = []
    pieces = store.read_range(key, start, end - start) if end > start else iter(())
    try:
        for (sha, _offset, length, name), got, missing in packs.hash_ranges(pieces, start, group):
            if missing:
                problems.append(f"{name}: its object {_where(store, key)} is cut short "
                                f"({length - missing} of {length} bytes)")
            elif got != sha:
                problems.append(f"{name}: its object {_where(store, key)} does not match its "
                                f"SHA-256 (got {got[:12]}): altered in the store")
    except StoreError as exc:
        absent = "no such object" in str(exc)
        for _, _, _, name in group:
            problems.append(f"{name}: its object {_where(store, key)} is missing from the store"
                            if absent else f"{name}: its object could not be read ({exc})")
        problems = list(dict.fromkeys(problems))
    yield from problems


def _where(store, key: str) -> str:
    return f"s3://{store.location.bucket}/{key}"


class _Events:
    """Each ``blob_objects`` row against the event that recorded it: the document's
    ``ingest`` (its details' ``store`` and ``object``) or a ``store-migrate`` (its ``store``,
    ``key`` and ``blobs``). The last event read is kept: rows come in key order, and one
    migration's rows are together."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.seq: int | None = None
        self.event: tuple | None = None

    def _load(self, seq: int) -> tuple | None:
        if seq != self.seq:
            row = self.conn.execute("SELECT action, document, details FROM events WHERE seq = ?",
                                    (seq,)).fetchone()
            event = None
            if row is not None:
                try:
                    details = json.loads(row[2])
                except ValueError:
                    details = None
                blobs = {}
                if row[0] == "store-migrate" and isinstance(details, dict):
                    for entry in details.get("blobs") or ():
                        if isinstance(entry, list) and len(entry) == 3:
                            blobs[entry[0]] = (entry[1], entry[2])
                event = (row[0], row[1], details if isinstance(details, dict) else {}, blobs)
            self.seq, self.event = seq, event
        return self.event

    def check(self, name: str, sha: str, store: str, key: str, offset: int, length: int,
              seq: int) -> Iterator[str]:
        event = self._load(seq)
        where = f"its object (blob_objects, event {seq})"
        if event is None:
            yield f"{name}: {where}: no such event"
            return
        action, _document, details, blobs = event
        if action == "ingest":
            recorded = details.get("object")
            if details.get("sha256") != sha or details.get("store") != store or recorded != {
                    "key": key, "offset": offset, "length": length}:
                yield f"{name}: {where}: the ingest event records another place for it"
        elif action == "store-migrate":
            if details.get("store") != store or details.get("key") != key \
                    or blobs.get(sha) != (offset, length):
                yield f"{name}: {where}: the store-migrate event records another place for it"
        else:
            yield f"{name}: {where}: a {action} event records no object"


def unreferenced(conn, stores: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The objects under each store (every store the archive has used, or ``stores``) that
    no ``blob_objects`` row refers to: ``store``, ``key``, ``size``, ``modified``. A merge
    of two key-ordered streams: the store's listing and the index."""
    if stores is None:
        stores = [row[0] for row in conn.execute(
            "SELECT DISTINCT json_extract(details, '$.store') FROM events "
            "WHERE action = 'store-set' AND json_extract(details, '$.store') IS NOT NULL")]
    for url in stores:
        store = store_for(str(Location.parse(url)))
        known = conn.execute("SELECT DISTINCT key FROM blob_objects WHERE store = ? ORDER BY key",
                             (url,))
        referenced = next(known, None)
        for item in store.objects():
            while referenced is not None and referenced[0] < item["key"]:
                referenced = next(known, None)
            if referenced is not None and referenced[0] == item["key"]:
                continue
            yield {"store": url, "key": item["key"], "size": item["size"],
                   "modified": item["modified"]}
