"""Public read replicas: snapshots published to an object store, served from it anywhere.

``stet publish s3://BUCKET/PREFIX/public/`` (:func:`publish_remote`) makes the public snapshot
of the archive as ``stet serve`` does (in ``ARCHIVE-public/`` beside it: the one for the
archive's chain head, brought up to date from an earlier one where it can be, or built whole;
``--full`` builds it whole, in a folder of its own) and publishes it under the prefix in
content-addressed parts::

    parts/XX/SHA256             a part of a snapshot: :data:`PART` bytes of the file (the last
                                shorter), named by their SHA-256 (XX: its first two hex digits)
    snapshots/LENGTH-HEAD.json  a snapshot's manifest (LENGTH, HEAD: the archive's chain it
                                holds): its size, SHA-256 and parts, in order
    latest.json                 which manifest is the newest, with the file's SHA-256 and size

An update of a snapshot (rows appended to a copy of the earlier one) leaves most of its pages
as they were, so most of its parts are already under ``parts/``: only the others are uploaded
(``parts/`` is listed once to know which), each with its SHA-256 for the server to check and
its size read back. Then the manifest, and only then ``latest.json``: a reader never finds a
pointer to something missing. The :data:`KEEP` newest manifests stay (a replica may be
downloading the one the pointer named a moment ago); older ones are then deleted, and every
part no kept manifest lists. ``latest.json`` holds no location (its ``snapshot`` is a key
relative to the prefix) and a snapshot names neither the archive's file nor its object store
(:func:`stet.publish.public_details`): the public prefix says nothing of the private bucket.

``stet serve --from s3://BUCKET/PREFIX/public/`` (:class:`RemoteSite`) reads ``latest.json``
and the manifest it names, and assembles the snapshot in a local cache folder: a part the
snapshot it serves (or another in its cache) already holds is copied from there, the others
are downloaded; every part is checked against its SHA-256. It then checks the whole file's
SHA-256 and size against the pointer, runs ``stet verify`` on it (its own chain must end at
the head the pointer records, and its first event must be ``stet publish``'s), and serves it
as ``stet serve`` serves a snapshot (:class:`stet.serve.LiveSite`, whose generations, swaps
and releases it reuses): every ``check_every`` seconds and on SIGHUP it reads ``latest.json``
again, and when that names another snapshot, assembles, checks and swaps it in. A snapshot
that fails a check is refused (one line in the log) and the one served stays; so does it
while the store cannot be reached. A replica only reads, and only under the public prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import urllib.parse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from . import files, store, timeutil
from .blobs.s3 import Bucket, Location, ObjectStore, StoreError
from .errors import InvalidInput, NotFound, StetError, arg
from .hashing import sha256_file
from .provenance import Chain
from .publish import STEPS, snapshot_record, write_snapshot
from .serve import CACHE_MB, CHECK_EVERY, LiveSite, _log_to_stderr, serve_site
from .snapshots import Snapshot, _hold, open_snapshot
from .verify import verify

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


def _file_hash(path: Path) -> tuple[str, int]:
    with open(path, "rb") as stream:
        return sha256_file(stream)


# -- publishing -----------------------------------------------------------------------------


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
    part_size = PART
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


# -- serving --------------------------------------------------------------------------------


def default_cache(location: Location) -> Path:
    """Where a replica keeps its snapshots unless told: ``$XDG_CACHE_HOME`` (else
    ``~/.cache``) ``/stet/replicas/BUCKET-HASH``, HASH naming the whole location."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(str(location).encode()).hexdigest()[:12]
    return Path(base) / "stet" / "replicas" / f"{location.bucket}-{digest}"


def check_snapshot(path: str | os.PathLike, pointer: dict[str, Any]) -> list[str]:
    """Every reason not to serve the downloaded file at ``path`` that ``pointer`` names (its
    SHA-256 and size checked already): it must be a stet public snapshot (its first event
    ``stet publish``'s) of the archive head the pointer records, pass ``stet verify``, and
    its own chain must end at the head the pointer records. Read through an immutable
    connection: nothing is written, and what is checked is what Datasette will serve."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        return [f"not a SQLite file ({exc})"]
    try:
        conn.execute("PRAGMA query_only = 1")
        try:
            record = snapshot_record(conn)
            head = Chain(conn).head()
        except sqlite3.Error as exc:
            return [f"not a stet snapshot ({exc})"]
        if record is None:
            return ["not a public snapshot (its first event is not stet publish's)"]
        source = _head_of(pointer["source_head"])
        if record.get("source") != {"events": source[0], "head": source[1]}:
            return [f"it holds the archive at {record.get('source')}, not at event {source[0]} "
                    f"as {POINTER} says"]
        expected = _head_of(pointer["head"])
        if head != expected:
            return [f"its chain ends at event {head[0]} ({head[1][:12]}), not at event "
                    f"{expected[0]} ({expected[1][:12]}) as {POINTER} says"]
        return verify(conn, expect_head=expected)
    finally:
        conn.close()


class RemoteSite(LiveSite):
    """A public read replica: :class:`~stet.serve.LiveSite` with snapshots read from an
    object store (``latest.json`` under ``url``, see the module's docstring) instead of built
    from an archive. Its heads are ``(length, sha256)``: the archive's chain length the
    snapshot holds and the file's SHA-256, as ``latest.json`` gives them. Snapshots are
    assembled from their parts in ``cache`` (:func:`default_cache`), each named by the chain
    length and its SHA-256, its manifest beside it (``NAME.json``: the parts the next one can
    copy from it); a file gets its name only once checked, and one no replica holds is
    removed when a newer one is served. ``last_parts``: how many parts the last snapshot
    assembled reused and downloaded (and the bytes downloaded)."""

    def __init__(self, url: str, *, cache: str | os.PathLike | None = None,
                 metadata: str | os.PathLike | None = None,
                 settings: dict[str, Any] | None = None, cache_mb: float = CACHE_MB,
                 check_every: float = CHECK_EVERY,
                 log: Callable[[str], Any] = _log_to_stderr) -> None:
        self.location = Location.parse(url)
        self.bucket = Bucket(self.location)
        self.objects = ObjectStore(self.location)
        self.source = f"{self.location}/"
        self.archive_path = None
        self.cache = Path(cache) if cache else default_cache(self.location)
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StetError(f"cannot write {self.cache}: "
                            f"{(exc.strerror or str(exc)).lower()}") from None
        self._setup(metadata=metadata, settings=settings, cache_mb=cache_mb,
                    check_every=check_every, log=log)

    def _pointer(self) -> dict[str, Any]:
        pointer = read_pointer(self.bucket)
        if pointer is None:
            raise NotFound(f"no public snapshot at {self.source}: no {POINTER} there (publish "
                           f"one with: stet publish {self.source})")
        return pointer

    def _head(self) -> tuple:
        pointer = self._pointer()
        return pointer["source_head"]["length"], pointer["sha256"]

    def _open(self) -> tuple[Snapshot, tuple]:
        pointer = self._pointer()
        head = (pointer["source_head"]["length"], pointer["sha256"])
        path = self.cache / f"{head[0]}-{pointer['sha256'][:16]}.db"
        snapshot = _hold(path)
        if snapshot is not None and _file_hash(path) != (pointer["sha256"], pointer["size"]):
            snapshot.close()  # damaged in the cache: fetched again
            if not files.remove_unused(path):
                raise StetError(f"{path} is not the snapshot {POINTER} names, and is in use")
            snapshot = None
        if snapshot is None:
            self._download(pointer, path)
            snapshot = _hold(path)
            if snapshot is None:
                raise StetError(f"{path} was removed as it was being opened")
        elif not path.with_suffix(".json").exists():  # cached by an earlier stet: its parts
            with contextlib.suppress(StetError):
                self._keep_manifest(path, self._manifest(pointer)[1])
        self._clean(keep=path)
        return snapshot, head

    def _manifest(self, pointer: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The manifest ``pointer`` names, checked against it, and its bytes."""
        name = pointer["snapshot"]
        data = self.bucket.get_bytes(name, limit=MANIFEST_LIMIT)
        if data is None:
            raise StetError(f"{name}, which {POINTER} names, is not there; refused")
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise StetError(f"{name} is not JSON; refused") from None
        problem = _manifest_problem(manifest, pointer)
        if problem:
            raise StetError(f"{name}: {problem}; refused")
        return manifest, data

    def _reusable(self) -> dict[str, tuple[Path, int, int]]:
        """Where the snapshots in the cache hold each part their manifests (``NAME.json``
        beside ``NAME.db``) list: SHA-256 -> file, offset, length; the served one first. A
        manifest is only a hint: what is copied from a file is checked against the part's
        SHA-256 as it is copied."""
        found: dict[str, tuple[Path, int, int]] = {}
        current = getattr(self, "_current", None)
        paths = [current.path] if current is not None else []
        paths += sorted((Path(entry.path) for entry in os.scandir(self.cache)
                         if _CACHED.fullmatch(entry.name)), reverse=True)
        for path in paths:
            try:
                manifest = json.loads(path.with_suffix(".json").read_bytes())
                part_size, size = manifest["part_size"], manifest["size"]
                if type(part_size) is not int or part_size <= 0 or type(size) is not int:
                    continue
                for number, sha in enumerate(manifest["parts"]):
                    if isinstance(sha, str) and number * part_size < size:
                        found.setdefault(sha, (path, number * part_size,
                                               min(part_size, size - number * part_size)))
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return found

    def _fetch_part(self, sha: str, length: int, manifest: str) -> bytes:
        """The part ``sha`` of ``length`` bytes, downloaded and checked."""
        name = _part_name(sha)
        data = bytearray()
        for piece in self.objects.read_range(self.location.key(name), 0, None):
            data += piece
            if len(data) > length:
                raise StetError(f"{name} is larger than the {length} bytes {manifest} says; "
                                "refused")
        found = hashlib.sha256(data).hexdigest()
        if (found, len(data)) != (sha, length):
            raise StetError(f"{name} is not the part {manifest} lists (SHA-256 {found[:12]}, "
                            f"{len(data)} bytes; expected {sha[:12]}, {length} bytes); refused")
        return bytes(data)

    def _download(self, pointer: dict[str, Any], path: Path) -> None:
        """Assemble the snapshot ``pointer`` names in a temporary file from its manifest's
        parts (each copied from a snapshot in the cache that holds it, else downloaded;
        each checked against its SHA-256), check it (SHA-256 and size, then
        :func:`check_snapshot`) and only then give it its name, its manifest beside it."""
        name = pointer["snapshot"]
        manifest, raw = self._manifest(pointer)
        part_size, size = manifest["part_size"], manifest["size"]
        sources = self._reusable()
        fds: dict[Path, int | None] = {}
        plan = []
        for number, sha in enumerate(manifest["parts"]):
            length = min(part_size, size - number * part_size)
            where = sources.get(sha)
            source = None
            if where is not None and where[2] == length:
                if where[0] not in fds:
                    try:
                        fds[where[0]] = os.open(where[0], os.O_RDONLY)
                    except OSError:  # removed since: the part is downloaded
                        fds[where[0]] = None
                if fds[where[0]] is not None:
                    source = (fds[where[0]], where[1])
            plan.append((sha, length, source))

        def part(sha: str, length: int, source: tuple[int, int] | None) -> tuple[bytes, bool]:
            if source is not None:
                data = os.pread(source[0], length, source[1])
                if hashlib.sha256(data).hexdigest() == sha:
                    return data, True
            return self._fetch_part(sha, length, name), False

        counts = {True: 0, False: 0}
        fetched = 0
        try:
            with files.temporary(path) as tmp:
                digest, written = hashlib.sha256(), 0
                with open(tmp, "r+b") as out, ThreadPoolExecutor(PARALLEL) as pool:
                    window: deque = deque()
                    try:
                        for item in plan:
                            window.append(pool.submit(part, *item))
                            while window and (len(window) >= PARALLEL or item is plan[-1]):
                                data, reused = window.popleft().result()
                                counts[reused] += 1
                                fetched += 0 if reused else len(data)
                                written += len(data)
                                digest.update(data)
                                out.write(data)
                    except BaseException:
                        for waiting in window:
                            waiting.cancel()
                        raise
                    out.flush()
                    os.fsync(out.fileno())
                if (digest.hexdigest(), written) != (pointer["sha256"], pointer["size"]):
                    raise StetError(f"{name} does not make the file {POINTER} names (SHA-256 "
                                    f"{digest.hexdigest()[:12]}, {written} bytes; expected "
                                    f"{pointer['sha256'][:12]}, {pointer['size']} bytes); "
                                    "refused")
                try:
                    problems = check_snapshot(tmp, pointer)
                finally:
                    for extra in ("-wal", "-shm", "-journal"):
                        files.unlink_quietly(Path(f"{tmp}{extra}"))
                if problems:
                    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                    raise StetError(f"{name} fails stet verify: {problems[0]}{more}; refused")
                try:
                    os.link(tmp, path)
                except FileExistsError:  # another replica sharing the cache placed it first
                    pass
        finally:
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)
        self._keep_manifest(path, raw)
        self.last_parts = {"reused": counts[True], "downloaded": counts[False],
                      "downloaded_bytes": fetched}
        self.log(f"stet serve: {path.name} assembled from {len(plan)} parts of {name}: "
                 f"{counts[True]} reused from the cache, {counts[False]} downloaded "
                 f"({fetched} bytes)")

    def _keep_manifest(self, path: Path, raw: bytes) -> None:
        """Keep a snapshot's manifest beside it in the cache (``NAME.json``): which parts it
        holds, for the next snapshot to reuse. Only a hint: failing to write it costs only
        downloads."""
        with contextlib.suppress(OSError):
            with files.write_whole(path.with_suffix(".json"), "wb") as stream:
                stream.write(raw)

    def _clean(self, *, keep: Path) -> None:
        """Remove every cached snapshot no process holds, but ``keep``; the manifests of
        snapshots no longer there; and the leftovers of downloads that were killed."""
        for entry in os.scandir(self.cache):
            if _CACHED.fullmatch(entry.name) and entry.name != keep.name:
                files.remove_unused(Path(entry.path))
        for entry in os.scandir(self.cache):
            if _CACHED_MANIFEST.fullmatch(entry.name) \
                    and not Path(entry.path).with_suffix(".db").exists():
                files.unlink_quietly(Path(entry.path))
        files.clean_temporaries(self.cache)

    def _let_go(self, generation) -> None:
        """As :class:`~stet.serve.LiveSite` lets a replaced snapshot go (its file removed
        unless another process holds it), and its manifest with it."""
        super()._let_go(generation)
        if not generation.path.exists():
            files.unlink_quietly(generation.path.with_suffix(".json"))

    def _could_not(self, head: tuple | None, exc: BaseException) -> str:
        at = f" (event {head[0]}, sha256 {head[1][:12]})" if head else ""
        return (f"stet serve: could not serve the snapshot {POINTER} names in {self.source}{at}"
                f" ({exc}); still serving {self._current.path.name}")

    def _what_is_read(self) -> str:
        return f"{self.source}{POINTER}"


def serve_remote(url: str, *, cache: str | os.PathLike | None = None, host: str = "127.0.0.1",
                 port: int = 8001, metadata: str | os.PathLike | None = None,
                 cache_mb: float = CACHE_MB, check_every: float = CHECK_EVERY,
                 announce=print) -> None:
    """``stet serve --from URL``: a :class:`RemoteSite` served until interrupted."""
    site = RemoteSite(url, cache=cache, metadata=metadata, cache_mb=cache_mb,
                      check_every=check_every)
    serve_site(site, host=host, port=port, announce=announce)
