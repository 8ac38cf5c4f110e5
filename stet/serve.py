"""Serving an archive with Datasette: the public snapshot, read-only, as database ``archive``.

``stet serve`` never opens the live archive in Datasette. It serves the public snapshot
(:func:`stet.snapshots.open_snapshot`: a file in the folder ``archive.db-public`` beside the
archive, one per state of the archive's event chain, built when the chain has grown), opened
in Datasette's immutable mode, so that no URL can reach restricted material or write
anything: the file holds nothing restricted and SQLite opens it read-only. The server holds
the snapshot it serves: a snapshot file never changes once it has its name, and is removed
only when no server holds it, so every route (pages, JSON, ``/archive.db``) answers from the
snapshot the server holds, whatever another ``stet serve`` builds meanwhile. Because the file
cannot change, the answers to anonymous GET requests are kept in memory
(:class:`ResponseCache`, ``cache_mb``: ``stet serve --cache-mb``), one cache per snapshot. Any
method but GET, HEAD and OPTIONS answers 405 (the plugin's ``asgi_wrapper``: every database
served is immutable).

While it runs, ``stet serve`` follows the archive (:class:`LiveSite`): every few seconds
(``check_every``: ``stet serve --check-every``), and at once on SIGHUP, it compares the
archive's chain head with the one the served snapshot was derived from; when the chain has
grown it builds the new snapshot in a background thread and swaps it in atomically. Each
request is answered by the snapshot that was current when it began, to its last byte, and a
replaced snapshot is let go (and its file removed) when its last request has finished. A build
that fails leaves the old snapshot served.

``stet serve --from s3://BUCKET/PREFIX/public/`` is a public read replica
(:class:`stet.remote.RemoteSite`, a :class:`LiveSite` whose snapshots are downloaded from an
object store and checked instead of built): the same serving, swapping and following.

The metadata is the copy packaged with stet with ``--metadata FILE``, else ``./metadata.yml``
where present, laid over it (:func:`load_metadata`).
"""

from __future__ import annotations

import asyncio
import copy
import os
import select
import signal
import socket
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from . import files
from .errors import InvalidInput, NotFound
from .lru import KEPT_BY_RESPONSE_CACHE, LRU
from .snapshots import Snapshot, open_snapshot, snapshot_info, source_head

DATABASE_NAME = "archive"

#: Datasette settings for a fast, read-only public site.
SETTINGS = {
    "suggest_facets": False,   # suggesting facets costs most of a table page's time
    "allow_download": True,    # the snapshot is public: downloading it whole is fine
    "default_allow_sql": True,  # ?sql= is read-only on an immutable file
    "sql_time_limit_ms": 2000,
    "facet_time_limit_ms": 200,
    "default_cache_ttl": 60,
    "num_sql_threads": 4,
}


def metadata_path(given: str | os.PathLike | None = None) -> Path | None:
    """Where the metadata comes from: ``given``, else ``./metadata.yml``, else the packaged copy."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise NotFound(f"no metadata file {given}")
        return path
    local = Path("metadata.yml")
    if local.is_file():
        return local
    return None


def load_metadata(given: str | os.PathLike | None = None) -> dict[str, Any]:
    """The metadata Datasette gets: the copy packaged with stet (every table, column and query
    described, a neutral title and description), with ``given``, else ``./metadata.yml`` where
    present, laid over it by :func:`merge`. A file of overrides need hold only what differs
    (the demo's ``metadata.yml`` holds a title and a description)."""
    packaged = _read_metadata(None)
    path = metadata_path(given)
    return merge(packaged, _read_metadata(path)) if path else packaged


def _read_metadata(path: Path | None) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8") if path else \
            resources.files("stet").joinpath("metadata.yml").read_text(encoding="utf-8")
        metadata = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{path or 'metadata.yml'}: not a mapping of metadata")
    return metadata


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it: mappings are merged key by key (at any depth),
    any other value replaces the one below, and a key given as null (``key: ~``) is removed."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_datasette(snapshot: str | os.PathLike | Snapshot, *,
                   metadata: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
    """A Datasette serving ``snapshot`` immutable, as ``archive``, with the stet plugin. A
    held :class:`~stet.snapshots.Snapshot` stays held for as long as the Datasette lives."""
    from datasette.app import Datasette
    from datasette.database import Database

    ds = Datasette(metadata=metadata if metadata is not None else load_metadata(),
                   settings={**SETTINGS, **(settings or {})}, cors=False)
    database = Database(ds, path=os.fspath(snapshot), is_mutable=False)
    if isinstance(snapshot, Snapshot):
        database.stet_snapshot = snapshot  # the hold lives as long as the database does
    ds.add_database(database, name=DATABASE_NAME)
    if "_memory" in ds.databases:  # added when no file is given: not part of the archive
        ds.remove_database("_memory")
    return ds


class ResponseCache:
    """An ASGI middleware that keeps the answers to anonymous GET requests, least recently used
    out first, within ``budget`` bytes. Sound only because the served file is immutable: the
    same URL, scheme and Host always get the same answer. Not kept: other methods, requests
    with a cookie or credentials, answers other than 200, answers that set a cookie, and
    bodies over a quarter of the budget (those stream through untouched). Each request whose
    answer it may keep is marked in its scope (:data:`stet.lru.KEPT_BY_RESPONSE_CACHE`), so
    that the plugin does not keep the same page a second time."""

    def __init__(self, app, budget: int = 128 * 1024 * 1024) -> None:
        self.app = app
        self.budget = budget
        self.cache = LRU(budget)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or self.budget <= 0 or any(
                name in (b"cookie", b"authorization") for name, _ in scope.get("headers", ())):
            return await self.app(scope, receive, send)
        # Pages hold absolute URLs built from the scheme and Host: both are part of the key,
        # so a request with a forged Host cannot poison what others get.
        key = b"\n".join([
            scope.get("scheme", "http").encode(),
            b" ".join(value for name, value in scope.get("headers", ())
                      if name == b"host" or name.startswith(b"x-forwarded-")),
            scope.get("raw_path") or scope["path"].encode(),
            scope.get("query_string", b""),
        ])
        hit = self.cache.get(key)
        if hit is not None:
            for message in hit:
                await send(message)
            return
        scope = {**scope, KEPT_BY_RESPONSE_CACHE: True}
        kept: list | None = []
        size = 0

        async def keep(message):
            nonlocal kept, size
            if kept is not None:
                if message["type"] == "http.response.start":
                    if message["status"] != 200 or any(
                            name.lower() == b"set-cookie" for name, _ in message.get("headers", ())):
                        kept = None
                elif message["type"] == "http.response.body":
                    size += len(message.get("body", b""))
                    if not self.cache.fits(size):
                        kept = None
                if kept is not None:
                    kept.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        if kept and kept[-1]["type"] == "http.response.body" and not kept[-1].get("more_body"):
            self.cache.put(key, kept, size)


#: Megabytes of answers ``stet serve`` keeps in memory by default.
CACHE_MB = 128


def cache_budget(cache_mb: float = CACHE_MB) -> int:
    """Bytes of answers kept for ``cache_mb`` megabytes (0, or less, turns the cache off)."""
    return max(0, int(float(cache_mb) * 1024 * 1024))


def prepare(archive_path: str | os.PathLike, *, metadata: str | os.PathLike | None = None,
            settings: dict[str, Any] | None = None):
    """Build (or reuse) the snapshot of ``archive_path`` and a Datasette serving it, holding
    it; returns the Datasette and the snapshot's path."""
    if not Path(archive_path).exists():
        raise NotFound(f"no archive at {archive_path}")
    meta = load_metadata(metadata)
    snapshot = open_snapshot(archive_path)
    return make_datasette(snapshot, metadata=meta, settings=settings), snapshot.path


#: Seconds between two looks at the archive's chain head by ``stet serve`` (0: never; SIGHUP
#: still looks at once).
CHECK_EVERY = 5.0

#: Seconds before a build that failed is tried again for the same chain head (unless asked
#: for: SIGHUP, or :meth:`LiveSite.refresh`); a new head is tried at once.
RETRY_AFTER = 60.0


class Generation:
    """One snapshot as served: held, with its Datasette and its response cache, and the
    requests in flight on it. Let go (:meth:`LiveSite`) once replaced and idle."""

    def __init__(self, number: int, snapshot: Snapshot, head: tuple, ds, app) -> None:
        self.number = number
        self.snapshot = snapshot
        self.path: Path = snapshot.path
        # what it was made from: the source chain's length and head hash (a replica,
        # :class:`stet.remote.RemoteSite`: that length and the snapshot's SHA-256)
        self.head = head
        self.ds = ds
        self.app = app
        self.in_flight = 0
        self.replaced = False  # a newer snapshot is served: let go once idle
        self.released = False

    def release(self) -> None:
        """Close the Datasette's connections and threads and let go of the snapshot."""
        for database in self.ds.databases.values():
            try:
                database.close()
            except Exception:  # noqa: BLE001 - letting go must not fail a request
                pass
        if self.ds.executor is not None:
            self.ds.executor.shutdown(wait=False)
        self.snapshot.close()

    def __repr__(self) -> str:
        return f"<Generation {self.number} {self.path.name} in flight {self.in_flight}>"


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LiveSite:
    """The public site of an archive that follows the archive: an ASGI app serving the
    current public snapshot, swapped for a new one when the archive's chain has grown.

    - :meth:`current` is the :class:`Generation` served now; each request is given to the
      current one when it begins and stays on it to its last byte (a long download of
      ``/archive.db`` or of raw bytes included), so no request ever sees two snapshots.
    - :meth:`changed` compares the archive's chain head (a read-only connection) with the
      one the served snapshot was derived from; :meth:`check` refreshes when it has changed.
    - :meth:`refresh` builds (or reuses) the snapshot of the archive as it stands, with
      :func:`~stet.snapshots.open_snapshot` as :func:`prepare` does, makes a Datasette and a
      :class:`ResponseCache` for it, starts it, and only then swaps it in. It runs in the
      calling thread (the checker thread when serving), one at a time: requests are never
      held up by a build. A build that fails is logged and the old snapshot stays served.
    - A replaced snapshot is let go when its last request has finished, and its file is then
      removed unless another process holds it (:func:`stet.files.remove_unused`).
    - :meth:`start` starts the checker thread (a daemon, so it never keeps the process
      alive): it checks every ``check_every`` seconds (0: never) and at once on
      :meth:`wake` (``stet serve`` wakes it on SIGHUP). The ASGI lifespan starts it at
      start-up and :meth:`close` stops it at shutdown.

    Where snapshots come from is two methods, :meth:`_head` (what a snapshot would be made
    from now) and :meth:`_open` (a held snapshot of that, and what it was made from): a
    replica of snapshots published to an object store (:class:`stet.remote.RemoteSite`)
    overrides them, and everything else (generations, swaps, releases, the checker) is this.
    """

    #: What a snapshot is made of, for the log: the archive (a replica: its store location).
    source: str

    def __init__(self, archive_path: str | os.PathLike, *,
                 metadata: str | os.PathLike | None = None,
                 settings: dict[str, Any] | None = None, cache_mb: float = CACHE_MB,
                 check_every: float = CHECK_EVERY,
                 log: Callable[[str], Any] = log_to_stderr) -> None:
        if not Path(archive_path).exists():
            raise NotFound(f"no archive at {archive_path}")
        self.archive_path = Path(archive_path)
        self.source = str(archive_path)
        self._setup(metadata=metadata, settings=settings, cache_mb=cache_mb,
                    check_every=check_every, log=log)

    def _setup(self, *, metadata, settings, cache_mb, check_every, log) -> None:
        """What every site does at start: the first snapshot opened (errors raised: nothing
        to serve), and the checker's waking sockets."""
        self.metadata = load_metadata(metadata)
        self.settings = settings
        self.budget = cache_budget(cache_mb)
        self.check_every = max(0.0, float(check_every or 0))
        self.log = log
        self._lock = threading.Lock()  # the current generation, and every in-flight count
        self._building = threading.Lock()  # one build at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failed: tuple[tuple, float] | None = None  # head, when
        self._unreadable: str | None = None  # the last error of a look at the head, logged once
        self._generations = 0
        self._current = self._build()
        # the checker thread waits on a socket: waking it takes no lock (a signal handler may)
        self._waker, self._woken = socket.socketpair()
        self._waker.setblocking(False)

    # -- what is served ---------------------------------------------------------------

    def current(self) -> Generation:
        """The generation new requests are given to."""
        return self._current

    def changed(self) -> bool:
        """Whether the archive's chain has moved since the served snapshot was derived."""
        return self._head() != self._current.head

    def _head(self) -> tuple:
        """What a snapshot would be made from now: the archive's chain length and head."""
        return source_head(self.archive_path)

    def _open(self) -> tuple[Snapshot, tuple]:
        """The snapshot of the archive as it stands (built or reused: :func:`open_snapshot`),
        held, and the head it was derived from."""
        before = self._head()
        snapshot = open_snapshot(self.archive_path)
        try:
            return snapshot, _derived_from(snapshot.path) or before
        except BaseException:
            snapshot.close()
            raise

    def _could_not(self, head: tuple | None, exc: BaseException) -> str:
        """The log line of a refresh that failed (the old snapshot stays served)."""
        at = f" at event {head[0]}" if head else ""
        return (f"stet serve: could not build the public snapshot of {self.source}{at} "
                f"({exc.__class__.__name__}: {exc}); still serving {self._current.path.name}")

    def check(self, *, retry: bool = False) -> bool:
        """Refresh if the archive's chain has moved; True if a new snapshot is served now. A
        head whose build failed is tried again only after :data:`RETRY_AFTER` seconds, or
        with ``retry``."""
        head = self._head()
        if head == self._current.head or self._closed:
            return False
        failed = self._failed
        if not retry and failed and failed[0] == head and time.monotonic() - failed[1] < RETRY_AFTER:
            return False
        return self.refresh()

    def refresh(self) -> bool:
        """Build (or reuse) the snapshot of the archive as it stands and serve it; True if a
        new snapshot is served now. False if nothing changed, if another build is running,
        or if the build failed (logged; the old snapshot stays served)."""
        if not self._building.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return False
            before = None
            try:
                before = self._head()
                new = self._build()
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, keep serving
                self._failed = (before, time.monotonic()) if before else None
                self.log(self._could_not(before, exc))
                return False
            self._failed = None
            return self._swap(new)
        finally:
            self._building.release()

    def _build(self) -> Generation:
        snapshot, head = self._open()
        try:
            if self._generations and snapshot.path == self._current.path:
                # the served snapshot is already the archive as it stands (it was built for a
                # later head than recorded): note the head, change nothing
                self._current.head = head
                snapshot.close()
                return self._current
            ds = make_datasette(snapshot, metadata=copy.deepcopy(self.metadata),
                                settings=self.settings)
            app = ResponseCache(ds.app(), budget=self.budget)
            self._generations += 1
            generation = Generation(self._generations, snapshot, head, ds, app)
            if self._generations > 1 and not _in_event_loop():
                try:  # ready before it is served (the first is started by the lifespan)
                    asyncio.run(_start(app))
                except BaseException:
                    generation.release()
                    raise
            return generation
        except BaseException:
            snapshot.close()
            raise

    def _swap(self, new: Generation) -> bool:
        with self._lock:
            old = self._current
            if new is old:
                return False
            if self._closed:  # stopped while building: the new one is never served
                new.released = True
                let_go = [new]
            else:
                self._current = new
                old.replaced = True
                let_go = [old] if old.in_flight == 0 and not old.released else []
                for generation in let_go:
                    generation.released = True
        for generation in let_go:
            self._let_go(generation)
        if new is self._current:
            self.log(f"stet serve: now serving {new.path.name} (event {new.head[0]} of "
                     f"{self.source})")
            return True
        return False

    def _let_go(self, generation: Generation) -> None:
        generation.release()
        if generation.replaced and generation.path != self._current.path:
            files.remove_unused(generation.path)  # unless another server holds it

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        with self._lock:  # picked once, at the start: the whole answer comes from it
            generation = self._current
            generation.in_flight += 1
        try:
            await generation.app(scope, receive, send)
        finally:
            with self._lock:
                generation.in_flight -= 1
                idle = generation.replaced and generation.in_flight == 0 and not generation.released
                if idle:
                    generation.released = True
            if idle:
                self._let_go(generation)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await _start(self._current.app)
                    self.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- the checker thread -------------------------------------------------------------

    def start(self) -> None:
        """Start checking the archive in a daemon thread (once)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._follow, name="stet-serve-check",
                                            daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check at once (SIGHUP), even with ``check_every`` 0. Takes no lock: safe in a
        signal handler."""
        try:
            self._waker.send(b"\0")
        except OSError:  # already awake (the buffer is full), or closed
            pass

    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                woken = bool(select.select([self._woken], [], [], self.check_every or None)[0])
                if self._stop.is_set():
                    return
                if woken:
                    self._woken.recv(4096)
                try:
                    self.check(retry=woken)
                except Exception as exc:  # noqa: BLE001 - the source unreadable for a while
                    problem = f"{exc.__class__.__name__}: {exc}"
                    if problem != self._unreadable:  # once, not at every look
                        self._unreadable = problem
                        self.log(f"stet serve: could not read {self._what_is_read()} "
                                 f"({problem}); still serving {self._current.path.name}")
                else:
                    if self._unreadable is not None:
                        self._unreadable = None
                        self.log(f"stet serve: {self._what_is_read()} can be read again")
        finally:
            self._waker.close()
            self._woken.close()

    def _what_is_read(self) -> str:
        """What each look reads, for the log."""
        return f"the chain head of {self.source}"

    def close(self) -> None:
        """Stop checking and let go of the snapshot served (once its last request is done). A
        build running now is not waited for: what it builds is let go, never served."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            started = self._thread is not None
            generation = self._current
            idle = generation.in_flight == 0 and not generation.released
            if idle:
                generation.released = True
            else:
                generation.replaced = True  # let go by its last request (its file is kept)
        if started:
            self.wake()  # the thread stops, and closes the sockets
        else:
            self._waker.close()
            self._woken.close()
        if idle:
            generation.release()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _derived_from(path: Path) -> tuple[int, str] | None:
    """The source chain's length and head a snapshot records in its first event."""
    source = (snapshot_info(path) or {}).get("source")
    if isinstance(source, dict) and isinstance(source.get("events"), int) \
            and isinstance(source.get("head"), str):
        return source["events"], source["head"]
    return None


async def _start(app) -> None:
    """Start a Datasette (its plugins' start-up hooks, the table counts of its immutable
    database) by a lifespan start-up and shutdown, as a server would before its first
    request: a new snapshot is ready before it is swapped in."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive():
        return next(messages)

    async def send(message):
        if message["type"].endswith(".failed"):
            raise RuntimeError(message.get("message") or "Datasette did not start")

    await app({"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}},
              receive, send)


def run(archive_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8001,
        metadata: str | os.PathLike | None = None, cache_mb: float = CACHE_MB,
        check_every: float = CHECK_EVERY, announce=print) -> None:
    """Serve until interrupted, keeping up to ``cache_mb`` megabytes of answers (0: none) and
    looking for a new state of the archive every ``check_every`` seconds (0: never) and on
    SIGHUP (:class:`LiveSite`)."""
    site = LiveSite(archive_path, metadata=metadata, cache_mb=cache_mb, check_every=check_every)
    serve_site(site, host=host, port=port, announce=announce)


def serve_site(site: LiveSite, *, host: str = "127.0.0.1", port: int = 8001,
               announce=print) -> None:
    """Serve ``site`` (a :class:`LiveSite`, or a replica's) with uvicorn until interrupted;
    SIGHUP wakes its checker. Lets go of it at the end."""
    import uvicorn

    hup = getattr(signal, "SIGHUP", None)
    previous = None
    if hup is not None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(hup, lambda signum, frame: site.wake())
    check_every = site.check_every
    every = f"every {check_every:g} s and on SIGHUP" if check_every else "on SIGHUP"
    announce(f"Serving the public snapshot {site.current().path} of {site.source} "
             f"on http://{host}:{port}/ (read-only; a new snapshot is looked for {every}; "
             "Ctrl-C stops)")
    try:
        uvicorn.run(site, host=host, port=port, log_level="warning", lifespan="on")
    finally:
        site.close()
        if previous is not None:
            signal.signal(hup, previous)
