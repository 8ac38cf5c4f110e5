"""Serving an archive with Datasette: the public snapshot, read-only, as database ``archive``.

``stet serve`` never opens the live archive in Datasette. It serves the public snapshot
(:func:`stet.snapshots.open_snapshot`: a file in the folder ``archive.db-public`` beside the
archive, one per state of the archive's event chain, built when the chain has grown), opened
in Datasette's immutable mode, so that no URL can reach restricted material or write
anything: the file holds nothing restricted and SQLite opens it read-only. The server holds
its snapshot for as long as it runs: a snapshot file never changes once it has its name, and
is removed only when no server holds it, so every route of a running server (pages, JSON,
``/archive.db``) answers from the one snapshot it opened, whatever another ``stet serve``
builds meanwhile. Because the file cannot change, the answers to anonymous GET requests are
kept in memory (:class:`ResponseCache`, ``cache_mb``: ``stet serve --cache-mb``). Any method but GET, HEAD
and OPTIONS answers 405 (the plugin's ``asgi_wrapper``: every database served is immutable).

The metadata is the copy packaged with stet with ``--metadata FILE``, else ``./metadata.yml``
where present, laid over it (:func:`load_metadata`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidInput, NotFound
from .lru import KEPT_BY_RESPONSE_CACHE, LRU
from .snapshots import Snapshot, open_snapshot

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


def run(archive_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8001,
        metadata: str | os.PathLike | None = None, cache_mb: float = CACHE_MB,
        announce=print) -> None:
    """Serve until interrupted, keeping up to ``cache_mb`` megabytes of answers (0: none)."""
    import uvicorn

    ds, snapshot = prepare(archive_path, metadata=metadata)
    app = ResponseCache(ds.app(), budget=cache_budget(cache_mb))
    announce(f"Serving the public snapshot {snapshot} of {archive_path} "
             f"on http://{host}:{port}/ (read-only; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
