"""Public read replicas: snapshots published to an object store, served from it anywhere.

``stet publish s3://BUCKET/PREFIX/public/`` (:func:`publish_remote`) makes the public snapshot
of the archive as ``stet serve`` does (in ``ARCHIVE-public/`` beside it: the one for the
archive's chain head, brought up to date from an earlier one where it can be, or built whole;
``--full`` builds it whole, in a folder of its own) and uploads it under the prefix::

    snapshots/LENGTH-HEAD.db   the snapshot (LENGTH, HEAD: the archive's chain it holds)
    latest.json                which snapshot is the newest, with its SHA-256 and size

The snapshot goes up first and its size is read back; only then is ``latest.json`` replaced,
so a reader never finds a pointer to a missing file. The :data:`KEEP` newest snapshots stay
(a replica may be downloading the one the pointer named a moment ago); older ones under
``snapshots/`` are then deleted. ``latest.json`` holds no location (its ``snapshot`` is a key
relative to the prefix) and a snapshot names neither the archive's file nor its object store
(:func:`stet.publish.public_details`): the public prefix says nothing of the private bucket.

``stet serve --from s3://BUCKET/PREFIX/public/`` (:class:`RemoteSite`) reads ``latest.json``,
downloads the snapshot it names into a local cache folder, checks its SHA-256 and size against
the pointer, runs ``stet verify`` on it (its own chain must end at the head the pointer
records, and its first event must be ``stet publish``'s), and serves it as ``stet serve``
serves a snapshot (:class:`stet.serve.LiveSite`, whose generations, swaps and releases it
reuses): every ``check_every`` seconds and on SIGHUP it reads ``latest.json`` again, and when
that names another snapshot, downloads, checks and swaps it in. A snapshot that fails a check
is refused (one line in the log) and the one served stays; so does it while the store cannot be
reached. A replica only reads, and only under the public prefix.
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
#: Its format: bumped when a reader would misread a newer one.
POINTER_FORMAT = 1
#: Snapshots kept under ``snapshots/`` (the newest, by the archive's chain length they hold).
KEEP = 3
#: How large a pointer may be (it is a few hundred bytes).
POINTER_LIMIT = 64 * 1024

_KEY = re.compile(r"snapshots/(\d+)-([0-9a-f]{64})\.db")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: A snapshot in a replica's cache: the archive's chain length it holds and the first 16 hex
#: digits of the file's SHA-256 (a name always means the same bytes).
_CACHED = re.compile(r"(\d+)-([0-9a-f]{16})\.db")


def _ignore(n: int) -> None:
    return None


# -- the pointer ----------------------------------------------------------------------------


def read_pointer(bucket: Bucket) -> dict[str, Any] | None:
    """``latest.json`` under ``bucket``'s prefix, checked (None when there is none)."""
    data = bucket.get_bytes(POINTER, limit=POINTER_LIMIT)
    if data is None:
        return None
    where = f"{bucket}/{POINTER}"
    try:
        pointer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StetError(f"{where} is not JSON") from None
    problem = _pointer_problem(pointer)
    if problem:
        raise StetError(f"{where}: {problem}")
    return pointer


def _pointer_problem(pointer: Any) -> str | None:
    if not isinstance(pointer, dict):
        return "not an object"
    if pointer.get("format") != POINTER_FORMAT:
        return (f"format {pointer.get('format')!r}, not {POINTER_FORMAT} (written by another "
                "version of stet)")
    if not isinstance(pointer.get("snapshot"), str) or not _KEY.fullmatch(pointer["snapshot"]):
        return "'snapshot' is not snapshots/LENGTH-HEAD.db"
    if not isinstance(pointer.get("sha256"), str) or not _HEX64.fullmatch(pointer["sha256"]):
        return "'sha256' is not a SHA-256"
    if type(pointer.get("size")) is not int or pointer["size"] <= 0:
        return "'size' is not a number of bytes"
    for key in ("head", "source_head"):
        if _head_of(pointer.get(key)) is None:
            return f"{key!r} is not a chain head (length and hash)"
    return None


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
    (``s3://BUCKET/PREFIX``): the snapshot, then ``latest.json`` naming it; then delete the
    snapshots older than the :data:`KEEP` newest. Only reads the archive
    (:meth:`stet.Archive.publish_remote` records the ``publish`` event).

    The snapshot is the one ``stet serve`` keeps for the archive's chain head
    (:func:`stet.snapshots.open_snapshot`: reused, or brought up to date from an earlier one,
    or built whole); ``full`` builds it whole, apart. Nothing is uploaded (``build``:
    ``"unchanged"``) when ``latest.json`` names a snapshot of this archive and every event
    since is a publication (which no snapshot holds), unless ``full``. A ``latest.json``
    naming a head this archive's chain does not hold (another archive's) is refused unless
    ``force``.

    Returns the summary :func:`stet.publish.publish` returns (``source``, ``left_out``,
    ``published``, ``head``, ``build``, ``reason``, ``sha256``, ``size``), with ``url``,
    ``snapshot`` (its key under the prefix), ``pointer`` (what ``latest.json`` now holds) and
    ``deleted`` (the snapshots deleted)."""
    source = Path(archive_path)
    if not source.exists():
        raise NotFound(f"no archive at {source}")
    location = Location.parse(url)
    bucket = Bucket(location)
    pointer = read_pointer(bucket)
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
            elif not full and _only_publications_since(db.conn, recorded[0]):
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
            "head": {"events": head[0], "hash": head[1]}, "deleted": [], "uploaded": False}


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


def _upload(bucket: Bucket, path: Path, built: dict[str, Any] | None,
            advance: Callable[[int], Any]) -> dict[str, Any]:
    """Upload the snapshot at ``path``, confirm its size, move ``latest.json`` to it, delete
    the old ones."""
    sha, size = _file_hash(path)
    summary = _describe(path)
    source = summary["source"]
    name = f"snapshots/{source['events']}-{source['head']}.db"
    bucket.upload(name, path)
    found = ObjectStore(bucket.location).size_of(bucket.location.key(name))
    if found != size:
        raise StoreError(f"object store {bucket}/{name}: written, but reads back as "
                         f"{found if found is not None else 'absent'} (not {size} bytes)")
    pointer = {"format": POINTER_FORMAT, "snapshot": name, "sha256": sha, "size": size,
               "head": {"length": summary["head"]["events"], "hash": summary["head"]["hash"]},
               "source_head": {"length": source["events"], "hash": source["head"]},
               "published": timeutil.iso(timeutil.now())}
    bucket.put_bytes(POINTER, (json.dumps(pointer, indent=2) + "\n").encode(),
                     content_type="application/json")
    advance(1)
    summary.update({"build": (built or {}).get("build", "reused"),
                    "reason": (built or {}).get("reason"), "since": (built or {}).get("since"),
                    "added": (built or {}).get("added"), "snapshot": name, "sha256": sha,
                    "size": size, "pointer": pointer, "uploaded": True,
                    "deleted": _prune(bucket, keep=name)})
    return summary


def _prune(bucket: Bucket, *, keep: str) -> list[str]:
    """Delete the snapshots under ``snapshots/`` but ``keep`` and the :data:`KEEP` newest
    (by the chain length each holds, then by time); the names deleted."""
    found = []
    for item in bucket.list("snapshots/"):
        match = _KEY.fullmatch(item["name"])
        if match:
            found.append((int(match[1]), item["modified"], item["name"]))
    found.sort(reverse=True)
    kept = {keep} | {name for _length, _time, name in found[:KEEP]}
    deleted = []
    for _length, _time, name in found:
        if name not in kept:
            bucket.delete(name)
            deleted.append(name)
    return deleted


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
    snapshot holds and the file's SHA-256, as ``latest.json`` gives them. Downloaded
    snapshots are kept in ``cache`` (:func:`default_cache`), each named by the chain length
    and its SHA-256; a file gets its name only once checked, and one no replica holds is
    removed when a newer one is served."""

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
        self._clean(keep=path)
        return snapshot, head

    def _download(self, pointer: dict[str, Any], path: Path) -> None:
        """Fetch the snapshot ``pointer`` names into a temporary file, check it (SHA-256 and
        size, then :func:`check_snapshot`) and only then give it its name."""
        name = pointer["snapshot"]
        with files.temporary(path) as tmp:
            digest, size = hashlib.sha256(), 0
            with open(tmp, "r+b") as out:
                for data in self.objects.read_range(self.location.key(name), 0, None):
                    size += len(data)
                    if size > pointer["size"]:
                        raise StetError(f"{name} is larger than the {pointer['size']} bytes "
                                        f"{POINTER} says; refused")
                    digest.update(data)
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if (digest.hexdigest(), size) != (pointer["sha256"], pointer["size"]):
                raise StetError(f"{name} is not the file {POINTER} names (SHA-256 "
                                f"{digest.hexdigest()[:12]}, {size} bytes; expected "
                                f"{pointer['sha256'][:12]}, {pointer['size']} bytes); refused")
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

    def _clean(self, *, keep: Path) -> None:
        """Remove every cached snapshot no process holds, but ``keep``; and the leftovers
        of downloads that were killed."""
        for entry in os.scandir(self.cache):
            if _CACHED.fullmatch(entry.name) and entry.name != keep.name:
                files.remove_unused(Path(entry.path))
        files.clean_temporaries(self.cache)

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
