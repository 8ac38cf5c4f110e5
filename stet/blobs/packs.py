"""Packs: the small files of one ingest batch (or one migration batch) in one object.

One object per file would be one request per file; a batch of up to a thousand small files
is one request instead (restic's answer to the same cost). A pack is the files' bytes one
after another, then an index that makes it readable without the archive: the JSON
``{"stet-pack": 1, "blobs": [[sha256, offset, length], ...]}`` followed by its own length as
8 bytes, big-endian. The pack's key is ``packs/XX/SHA256`` of the whole pack: content-
addressed like every object stet writes. Each file's place in it is its ``blob_objects``
row; a pack is written whole before the rows that refer to it commit, so a pack is either
referenced whole (its batch committed) or not at all (its batch did not): ``stet store gc``
never has to cut one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Iterator

from .s3 import ObjectStore

FORMAT = 1


def build(items: Iterable[tuple[str, bytes]]) -> tuple[bytes, list[tuple[str, int, int]]]:
    """The pack of ``items`` (sha256, bytes), and each one's (sha256, offset, length)."""
    parts: list[bytes] = []
    index: list[tuple[str, int, int]] = []
    offset = 0
    for sha, data in items:
        parts.append(data)
        index.append((sha, offset, len(data)))
        offset += len(data)
    trailer = json.dumps({"stet-pack": FORMAT, "blobs": [list(entry) for entry in index]},
                         separators=(",", ":")).encode()
    parts.append(trailer)
    parts.append(len(trailer).to_bytes(8, "big"))
    return b"".join(parts), index


def name(pack: bytes) -> tuple[str, str]:
    """The pack's name under a store (``packs/XX/SHA256``) and its SHA-256."""
    sha = hashlib.sha256(pack).hexdigest()
    return f"packs/{sha[:2]}/{sha}", sha


def put(store: ObjectStore, items: list[tuple[str, bytes]]) -> tuple[str, list[tuple[str, int, int]]]:
    """Write ``items`` as one pack (checked by the server against its SHA-256, its size read
    back); its full key, and each item's (sha256, offset, length) in it."""
    key, index, send = prepare(store, items)
    send()
    return key, index


def prepare(store: ObjectStore,
            items: list[tuple[str, bytes]]) -> tuple[str, list[tuple[str, int, int]], Callable[[], None]]:
    """The pack of ``items``, made here: its full key, each item's place in it, and the call
    that writes it (as :func:`put` does), for the caller to make when it chooses: an ingest
    writes its rows meanwhile."""
    pack, index = build(items)
    relative, sha = name(pack)
    return store.location.key(relative), index, lambda: store.put_named(relative, sha, pack)


def _walk(pieces: Iterator[bytes], start: int, index: list[tuple],
          sink: Callable[[], Any]) -> Iterator[tuple[tuple, Any, int]]:
    """Walk a stream of an object's bytes from ``start`` through ``index`` (entries whose
    [1] is an offset and [2] a length, in offset order, not overlapping): each entry with a
    new ``sink()`` fed (``update``) every piece of its range, and how many of its bytes are
    missing (the object ended first). Pieces are read through a view, never copied."""
    position = start  # of the stream, at view[at]
    view, at = memoryview(b""), 0
    for entry in index:
        offset, length = entry[1], entry[2]
        fed, need = sink(), length
        while need or position < offset:
            if at == len(view):
                view, at = memoryview(next(pieces, b"")), 0
                if not view:
                    break
            if position < offset:  # the bytes between: another blob's, or a gap
                cut = min(len(view) - at, offset - position)
            else:
                cut = min(len(view) - at, need)
                fed.update(view[at:at + cut])
                need -= cut
            at += cut
            position += cut
        yield entry, fed, need


def hash_ranges(pieces: Iterator[bytes], start: int,
                index: list[tuple]) -> Iterator[tuple[tuple, str, int]]:
    """For each entry of ``index`` (see :func:`_walk`): ``(entry, SHA-256 of its range,
    bytes missing)``, streamed (a large file's object is one entry)."""
    for entry, digest, missing in _walk(pieces, start, index, hashlib.sha256):
        yield entry, digest.hexdigest(), missing


class _Collected:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, piece: memoryview) -> None:
        self.parts.append(piece.tobytes())


def read_ranges(pieces: Iterator[bytes], start: int,
                index: list[tuple]) -> Iterator[tuple[tuple, bytes]]:
    """For each entry of ``index`` (see :func:`_walk`): ``(entry, its range's bytes)``
    (fewer than its length when the object ended first): for a pack's files, each small."""
    for entry, collected, _missing in _walk(pieces, start, index, _Collected):
        yield entry, b"".join(collected.parts)
