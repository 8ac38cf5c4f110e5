"""SHA-256 of bytes, of streams (in blocks, flat memory) and of canonical JSON."""

from __future__ import annotations

import hashlib
import json

import orjson
from typing import BinaryIO, Iterator

#: Raw bytes are read, hashed and stored in blocks of this size.
CHUNK_SIZE = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """The hash of a text is the hash of its UTF-8 encoding."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def sha256_file(stream: BinaryIO) -> tuple[str, int]:
    """Hash a stream in blocks; return (hex digest, size)."""
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: stream.read(CHUNK_SIZE), b""):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def chunks(stream: BinaryIO, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    return iter(lambda: stream.read(size), b"")


def canonical_json(value) -> str:
    """One text for one value: sorted keys, no spaces, UTF-8 kept (not escaped).

    Made with orjson (it runs for every event of every write); a value orjson refuses (an
    integer beyond 64 bits) falls back to the standard library, whose output is the same for
    everything but floats (tests/test_store.py compares them)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_json(value) -> str:
    return sha256_text(canonical_json(value))
