"""The formats under a public prefix: ``latest.json`` (the pointer), a snapshot's manifest and
its parts, and how each is checked when read."""

from __future__ import annotations

import json
import re
from typing import Any

from ..blobs.s3 import Bucket
from ..errors import StetError

#: The pointer to the newest snapshot, under the public prefix.
POINTER = "latest.json"
#: Its format: bumped when a reader would misread a newer one (1: it named a whole file,
#: ``snapshots/LENGTH-HEAD.db``; 2: a manifest of parts, ``snapshots/LENGTH-HEAD.json``).
POINTER_FORMAT = 2
#: A manifest's format.
MANIFEST_FORMAT = 2
#: Snapshots kept under ``snapshots/`` (the newest, by the archive's chain length they hold).
KEEP = 3
#: How large a pointer may be (it is a few hundred bytes).
POINTER_LIMIT = 64 * 1024
#: The size of a snapshot's parts (the last one shorter): 256 SQLite pages of 16 KiB.
PART = 4 << 20
#: Parts uploaded or downloaded at once (each in memory while it is sent or checked).
PARALLEL = 4
#: How large a manifest may be (about 70 bytes a part: 16 MiB is 200,000 parts).
MANIFEST_LIMIT = 16 << 20
#: The largest part a replica accepts (a part is held in memory while it is checked).
PART_LIMIT = 64 << 20

_KEY = re.compile(r"snapshots/(\d+)-([0-9a-f]{64})\.json")
#: What publications of earlier versions of stet (pointer format 1) left: whole files.
_OLD_KEY = re.compile(r"snapshots/(\d+)-([0-9a-f]{64})\.db")
_PART_KEY = re.compile(r"parts/([0-9a-f]{2})/([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: A snapshot in a replica's cache: the archive's chain length it holds and the first 16 hex
#: digits of the file's SHA-256 (a name always means the same bytes).
_CACHED = re.compile(r"(\d+)-([0-9a-f]{16})\.db")
#: The manifest of a cached snapshot, beside it (which parts it holds, where).
_CACHED_MANIFEST = re.compile(r"(\d+)-([0-9a-f]{16})\.json")


def _ignore(n: int) -> None:
    return None


# -- the pointer ----------------------------------------------------------------------------


def read_pointer(bucket: Bucket, *, earlier: bool = False) -> dict[str, Any] | None:
    """``latest.json`` under ``bucket``'s prefix, checked (None when there is none).
    ``earlier``: one an earlier version of stet wrote (format 1, naming a whole file) is
    taken too (the publisher's view: what it replaces)."""
    data = bucket.get_bytes(POINTER, limit=POINTER_LIMIT)
    if data is None:
        return None
    where = f"{bucket}/{POINTER}"
    try:
        pointer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StetError(f"{where} is not JSON") from None
    problem = _pointer_problem(pointer, earlier=earlier)
    if problem:
        raise StetError(f"{where}: {problem}")
    return pointer


def _pointer_problem(pointer: Any, *, earlier: bool = False) -> str | None:
    if not isinstance(pointer, dict):
        return "not an object"
    old = earlier and pointer.get("format") == 1
    if pointer.get("format") != POINTER_FORMAT and not old:
        return (f"format {pointer.get('format')!r}, not {POINTER_FORMAT} (written by another "
                "version of stet)")
    key = _OLD_KEY if old else _KEY
    if not isinstance(pointer.get("snapshot"), str) or not key.fullmatch(pointer["snapshot"]):
        return "'snapshot' is not snapshots/LENGTH-HEAD." + ("db" if old else "json")
    return _file_problem(pointer)


def _file_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with the fields a pointer and a manifest share (the file's SHA-256 and
    size, the heads)."""
    if not isinstance(record.get("sha256"), str) or not _HEX64.fullmatch(record["sha256"]):
        return "'sha256' is not a SHA-256"
    if type(record.get("size")) is not int or record["size"] <= 0:
        return "'size' is not a number of bytes"
    for key in ("head", "source_head"):
        if _head_of(record.get(key)) is None:
            return f"{key!r} is not a chain head (length and hash)"
    return None


def _manifest_problem(manifest: Any, pointer: dict[str, Any]) -> str | None:
    """What is wrong with a manifest (None: nothing), and whether it describes the file
    ``pointer`` names."""
    if not isinstance(manifest, dict):
        return "not an object"
    if manifest.get("format") != MANIFEST_FORMAT:
        return (f"format {manifest.get('format')!r}, not {MANIFEST_FORMAT} (written by another "
                "version of stet)")
    problem = _file_problem(manifest)
    if problem:
        return problem
    part_size, parts = manifest.get("part_size"), manifest.get("parts")
    if type(part_size) is not int or not 0 < part_size <= PART_LIMIT:
        return f"'part_size' is not a number of bytes up to {PART_LIMIT}"
    if not isinstance(parts, list) or len(parts) != -(-manifest["size"] // part_size):
        return "'parts' is not a list of one SHA-256 for each part of the file"
    if not all(isinstance(sha, str) and _HEX64.fullmatch(sha) for sha in parts):
        return "'parts' holds something that is not a SHA-256"
    if not isinstance(manifest.get("published"), str):
        return "'published' is not a time"
    for key in ("sha256", "size", "head", "source_head"):
        if manifest[key] != pointer[key]:
            return f"its {key!r} is not the one {POINTER} gives"
    return None


def _part_name(sha: str) -> str:
    return f"parts/{sha[:2]}/{sha}"


def _head_of(value: Any) -> tuple[int, str] | None:
    """``{"length": N, "hash": H}`` as ``(N, H)``; None if it is not one."""
    if not isinstance(value, dict):
        return None
    length, hash_ = value.get("length"), value.get("hash")
    if type(length) is not int or length < 0 or not isinstance(hash_, str) \
            or not _HEX64.fullmatch(hash_):
        return None
    return length, hash_
