"""``stet serve --from s3://BUCKET/PREFIX/public/``: a public read replica (see
:mod:`stet.remote`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import urllib.parse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .. import files
from ..blobs.s3 import Bucket, Location, ObjectStore, StoreError
from ..errors import NotFound, StetError
from ..provenance import Chain
from ..publish import file_hash, snapshot_record
from ..serve import CACHE_MB, CHECK_EVERY, LiveSite, log_to_stderr, serve_site
from ..snapshots import Snapshot, hold
from ..verify import verify
from .formats import (
    MANIFEST_LIMIT, PARALLEL, POINTER, _CACHED, _CACHED_MANIFEST, _head_of,
    _manifest_problem, _part_name, read_pointer)


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
                 log: Callable[[str], Any] = log_to_stderr) -> None:
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
        try:
            pointer = self._pointer()
        except StoreError as exc:
            # starting while the store cannot be reached: the newest snapshot the cache holds
            # (each was checked before it got its name), until the store answers again
            cached = self._cached() if getattr(self, "_current", None) is None else None
            if cached is None:
                raise
            self.log(f"stet serve: {self.source} cannot be read ({exc}); serving "
                     f"{cached[0].path.name} from the cache until it can")
            return cached
        head = (pointer["source_head"]["length"], pointer["sha256"])
        path = self.cache / f"{head[0]}-{pointer['sha256'][:16]}.db"
        snapshot = hold(path)
        if snapshot is not None and file_hash(path) != (pointer["sha256"], pointer["size"]):
            snapshot.close()  # damaged in the cache: fetched again
            if not files.remove_unused(path):
                raise StetError(f"{path} is not the snapshot {POINTER} names, and is in use")
            snapshot = None
        if snapshot is None:
            self._download(pointer, path)
            snapshot = hold(path)
            if snapshot is None:
                raise StetError(f"{path} was removed as it was being opened")
        elif not path.with_suffix(".json").exists():  # cached by an earlier stet: its parts
            with contextlib.suppress(StetError):
                self._keep_manifest(path, self._manifest(pointer)[1])
        self._clean(keep=path)
        return snapshot, head

    def _cached(self) -> tuple[Snapshot, tuple] | None:
        """The newest snapshot in the cache whose bytes are still those its manifest beside it
        records (SHA-256 and size), held, with its head; None when there is none."""
        found = sorted(((int(match[1]), Path(entry.path)) for entry in os.scandir(self.cache)
                        if (match := _CACHED.fullmatch(entry.name))), reverse=True)
        for length, path in found:
            try:
                manifest = json.loads(path.with_suffix(".json").read_bytes())
                recorded = (manifest["sha256"], manifest["size"])
            except (OSError, ValueError, TypeError, KeyError):
                continue
            snapshot = hold(path)
            if snapshot is None:
                continue
            if file_hash(path) != recorded:
                snapshot.close()
                continue
            return snapshot, (length, recorded[0])
        return None

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
