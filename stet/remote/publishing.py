"""``stet publish s3://BUCKET/PREFIX/public/``: the public snapshot sent in parts (see
:mod:`stet.remote`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .. import store, timeutil
from ..blobs.s3 import Bucket, Location, ObjectStore, StoreError
from ..errors import InvalidInput, NotFound, StetError, arg
from ..provenance import Chain
from ..publish import STEPS, snapshot_record, write_snapshot
from ..snapshots import open_snapshot
from . import formats
from .formats import (
    KEEP, MANIFEST_FORMAT, MANIFEST_LIMIT, PARALLEL, POINTER, POINTER_FORMAT, _HEX64, _KEY,
    _OLD_KEY, _PART_KEY, _head_of, _ignore, _part_name, read_pointer)


def publish_remote(archive_path: str | os.PathLike, url: str, *, full: bool = False,
                   force: bool = False, progress: Callable | None = None) -> dict[str, Any]:
    """Publish the public snapshot of the archive at ``archive_path`` under ``url``
    (``s3://BUCKET/PREFIX``): the snapshot's parts not there already, then its manifest, then
    ``latest.json`` naming it; then delete the manifests older than the :data:`KEEP` newest
    and the parts no kept manifest lists. Only reads the archive
    (:meth:`stet.Archive.publish_remote` records the ``publish`` event).

    The snapshot is the one ``stet serve`` keeps for the archive's chain head
    (:func:`stet.snapshots.open_snapshot`: reused, or brought up to date from an earlier one,
    or built whole); ``full`` builds it whole, apart. Nothing is uploaded (``build``:
    ``"unchanged"``) when ``latest.json`` names a snapshot of this archive and every event
    since is a publication (which no snapshot holds), unless ``full`` (or unless it is one
    an earlier stet wrote, pointer format 1, which replicas of this version cannot read). A
    ``latest.json`` naming a head this archive's chain does not hold (another archive's) is
    refused unless ``force``.

    Returns the summary :func:`stet.publish.publish` returns (``source``, ``left_out``,
    ``published``, ``head``, ``build``, ``reason``, ``sha256``, ``size``), with ``url``,
    ``snapshot`` (its manifest's key under the prefix, ``snapshots/LENGTH-HEAD.json``),
    ``pointer`` (what ``latest.json`` now holds), ``parts`` (``total``, ``distinct``,
    ``uploaded``, ``uploaded_bytes``, ``part_size``), ``deleted`` (the snapshots deleted) and
    ``deleted_parts`` (how many parts)."""
    source = Path(archive_path)
    if not source.exists():
        raise NotFound(f"no archive at {source}")
    location = Location.parse(url)
    bucket = Bucket(location)
    pointer = read_pointer(bucket, earlier=True)
    db = store.connect(str(source), mode="read")  # refuses one that needs migrating
    try:
        _not_over_a_store(db.conn, location)
        head = Chain(db.conn).head()
        if pointer is not None:
            recorded = _head_of(pointer["source_head"])
            if not _holds(db.conn, recorded):
                if not force:
                    raise InvalidInput(
                        f"{location}/{POINTER} names a snapshot of event {recorded[0]} of an "
                        "archive whose chain is not this one's (another archive's, or this "
                        f"one's before it was restored?): give {arg('force')} to replace it")
            elif not full and pointer["format"] == POINTER_FORMAT \
                    and _only_publications_since(db.conn, recorded[0]):
                return {**_unchanged(pointer), "url": str(location), "archive_head": {
                    "length": head[0], "head": head[1]}}
    finally:
        db.conn.close()
    counting = progress(STEPS + 1) if progress is not None else contextlib.nullcontext(_ignore)
    with counting as advance:
        if full:
            with tempfile.TemporaryDirectory(prefix=".stet-publish-", dir=source.parent) as tmp:
                path = Path(tmp) / "snapshot.db"
                built = write_snapshot(source, path, advance=advance)
                summary = _upload(bucket, path, built, advance)
        else:
            with open_snapshot(source) as snapshot:
                built = snapshot.built
                advance(STEPS)
                summary = _upload(bucket, snapshot.path, built, advance)
    summary["url"] = str(location)
    summary["archive_head"] = {"length": summary["source"]["events"],
                               "head": summary["source"]["head"]}
    return summary


#: What stet keeps under a store's prefix (raw bytes, Litestream's catalog): never public.
_STORE_PARTS = ("objects", "packs", "catalog")


def _not_over_a_store(conn, location: Location) -> None:
    """Refuse a public location that is one of the archive's object stores or holds one: a
    replica's read access to it would reach restricted raw bytes."""
    stores = {row[0] for row in conn.execute(
        "SELECT DISTINCT json_extract(details, '$.store') FROM events "
        "WHERE action = 'store-set' AND document IS NULL") if isinstance(row[0], str)}
    for url in sorted(stores):
        try:
            private = Location.parse(url)
        except StetError:
            continue
        if private.bucket != location.bucket:
            continue
        if not location.prefix or private.prefix == location.prefix \
                or private.prefix.startswith(location.prefix + "/"):
            raise InvalidInput(f"{location} holds the archive's object store {private}: "
                               "publish to a prefix of its own (such as "
                               f"{private.child('public')}/), which replicas can read alone")
        if any(location.prefix == private.key(part) or location.prefix.startswith(
                private.key(part) + "/") for part in _STORE_PARTS):
            raise InvalidInput(f"{location} is inside what the object store {private} keeps "
                               f"for itself: publish to a prefix of its own (such as "
                               f"{private.child('public')}/)")


def _holds(conn, head: tuple[int, str]) -> bool:
    seq, hash_ = head
    if seq == 0:
        return hash_ == store.GENESIS_HASH
    row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
    return row is not None and row[0] == hash_


def _only_publications_since(conn, seq: int) -> bool:
    """Whether every event after ``seq`` records a publication (no snapshot holds one)."""
    return conn.execute("SELECT 1 FROM events WHERE seq > ? AND NOT (action = 'publish' "
                        "AND document IS NULL) LIMIT 1", (seq,)).fetchone() is None


def _unchanged(pointer: dict[str, Any]) -> dict[str, Any]:
    source = _head_of(pointer["source_head"])
    head = _head_of(pointer["head"])
    return {"build": "unchanged", "reason": None, "snapshot": pointer["snapshot"],
            "sha256": pointer["sha256"], "size": pointer["size"], "pointer": pointer,
            "source": {"events": source[0], "head": source[1]},
            "head": {"events": head[0], "hash": head[1]}, "deleted": [], "deleted_parts": 0,
            "uploaded": False}


def _describe(path: Path) -> dict[str, Any]:
    """What a snapshot file holds: its record (source head, left out), its own chain head
    and the rows published."""
    db = store.connect(str(path), mode="read")
    try:
        record = snapshot_record(db.conn)
        if record is None:
            raise StetError(f"{path} is not a public snapshot")
        head = Chain(db.conn).head()
        published = {t: db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("documents", "annotations", "annotation_revisions", "layers",
                               "events")}
    finally:
        db.conn.close()
    return {"source": record["source"], "left_out": record.get("left_out"),
            "head": {"events": head[0], "hash": head[1]}, "published": published}


def _cut(path: Path, part_size: int) -> tuple[str, int, list[str]]:
    """The file's SHA-256 and size, and its parts' SHA-256s (parts of ``part_size`` bytes,
    the last shorter), in one read."""
    whole, size, parts = hashlib.sha256(), 0, []
    with open(path, "rb") as stream:
        for data in iter(lambda: stream.read(part_size), b""):
            whole.update(data)
            size += len(data)
            parts.append(hashlib.sha256(data).hexdigest())
    return whole.hexdigest(), size, parts


def _send_parts(objects: ObjectStore, path: Path, todo: dict[str, tuple[int, int]]) -> None:
    """Upload the parts ``todo`` (SHA-256 -> offset and length in the file at ``path``),
    :data:`PARALLEL` at once, each read from the file as it is sent (and hashed again: the
    snapshot is not to change) and written with its SHA-256 for the server to check."""
    if not todo:
        return
    with open(path, "rb") as stream:
        fd = stream.fileno()

        def send(sha: str, offset: int, length: int) -> None:
            data = os.pread(fd, length, offset)
            if len(data) != length or hashlib.sha256(data).hexdigest() != sha:
                raise StetError(f"{path} changed while it was being published")
            objects.put_named(_part_name(sha), sha, data)

        with ThreadPoolExecutor(PARALLEL) as pool:
            pending = [pool.submit(send, sha, *where) for sha, where in todo.items()]
            try:
                for done in pending:
                    done.result()
            except BaseException:
                for waiting in pending:
                    waiting.cancel()
                raise


def _upload(bucket: Bucket, path: Path, built: dict[str, Any] | None,
            advance: Callable[[int], Any]) -> dict[str, Any]:
    """Upload the parts of the snapshot at ``path`` not already under ``parts/``, then its
    manifest, then move ``latest.json`` to it; then delete the old manifests and the parts
    no kept manifest lists."""
    part_size = formats.PART  # (read at the call: a test sets smaller parts)
    sha, size, parts = _cut(path, part_size)
    summary = _describe(path)
    source = summary["source"]
    name = f"snapshots/{source['events']}-{source['head']}.json"
    objects = ObjectStore(bucket.location)
    there = {item["name"]: item["size"] for item in bucket.list("parts/")}
    todo: dict[str, tuple[int, int]] = {}
    for number, part in enumerate(parts):
        offset = number * part_size
        length = min(part_size, size - offset)
        if there.get(_part_name(part)) != length and part not in todo:
            todo[part] = (offset, length)
    _send_parts(objects, path, todo)
    head = {"length": summary["head"]["events"], "hash": summary["head"]["hash"]}
    source_head = {"length": source["events"], "hash": source["head"]}
    published = timeutil.iso(timeutil.now())
    manifest = {"format": MANIFEST_FORMAT, "size": size, "sha256": sha, "part_size": part_size,
                "parts": parts, "head": head, "source_head": source_head,
                "published": published}
    data = (json.dumps(manifest, indent=1) + "\n").encode()
    objects.put_named(name, hashlib.sha256(data).hexdigest(), data)  # its size read back
    pointer = {"format": POINTER_FORMAT, "snapshot": name, "sha256": sha, "size": size,
               "head": head, "source_head": source_head, "published": published}
    bucket.put_bytes(POINTER, (json.dumps(pointer, indent=2) + "\n").encode(),
                     content_type="application/json")
    advance(1)
    deleted, deleted_parts = _prune(bucket, keep=name, parts=parts)
    summary.update({"build": (built or {}).get("build", "reused"),
                    "reason": (built or {}).get("reason"), "since": (built or {}).get("since"),
                    "added": (built or {}).get("added"), "snapshot": name, "sha256": sha,
                    "size": size, "pointer": pointer, "uploaded": True,
                    "parts": {"total": len(parts), "distinct": len(set(parts)),
                              "uploaded": len(todo),
                              "uploaded_bytes": sum(n for _o, n in todo.values()),
                              "part_size": part_size},
                    "deleted": deleted, "deleted_parts": deleted_parts})
    return summary


def _prune(bucket: Bucket, *, keep: str, parts: list[str]) -> tuple[list[str], int]:
    """Delete the snapshots' manifests under ``snapshots/`` but ``keep`` (whose parts are
    ``parts``) and the :data:`KEEP` newest (by the chain length each holds, then by time;
    whole snapshots left by earlier versions of stet count among them), then every part no
    kept manifest lists: the names of the snapshots deleted, and how many parts."""
    found = []
    for item in bucket.list("snapshots/"):
        match = _KEY.fullmatch(item["name"]) or _OLD_KEY.fullmatch(item["name"])
        if match:
            found.append((int(match[1]), item["modified"], item["name"]))
    found.sort(reverse=True)
    kept = {keep} | {name for _length, _time, name in found[:KEEP]}
    deleted = []
    for _length, _time, name in found:
        if name not in kept:
            bucket.delete(name)
            deleted.append(name)
    listed = set(parts)
    for name in kept - {keep}:
        if not _KEY.fullmatch(name):
            continue
        try:
            manifest = json.loads((bucket.get_bytes(name, limit=MANIFEST_LIMIT) or b"").decode())
            more = manifest["parts"]
            if not isinstance(more, list) or not all(
                    isinstance(sha, str) and _HEX64.fullmatch(sha) for sha in more):
                raise ValueError(name)
        except (StoreError, UnicodeDecodeError, ValueError, TypeError, KeyError):
            return deleted, 0  # which parts it needs is not known: every part stays
        listed.update(more)
    unused = [item["name"] for item in bucket.list("parts/")
              if (match := _PART_KEY.fullmatch(item["name"])) and match[2] not in listed]
    if unused:
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(bucket.delete, unused))
    return deleted, len(unused)
