"""The workbench's Datasette: the LIVE archive (mutable), for logged-in accounts only.

:func:`make_workbench` serves the archive file itself as database ``archive`` (not a
snapshot), with the stet plugin, and marks the Datasette as a workbench
(``ds._stet_workbench``): the login, the API and the staff pages, registered by the plugin
on every Datasette, answer 404 anywhere else (the public ``stet serve`` knows nothing of
them). :func:`run` is ``stet workbench``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Callable

from ..errors import NotFound
from ..serve import DATABASE_NAME, SETTINGS, load_metadata

#: The mark :func:`make_workbench` sets: the workbench's routes answer only where it is set.
WORKBENCH_FLAG = "_stet_workbench"
API_PREFIX = "/-/api/"

#: Staff see the live archive: nothing is kept between requests, nothing downloaded whole.
WORKBENCH_SETTINGS = {**SETTINGS, "default_cache_ttl": 0, "allow_download": False}


def make_workbench(archive_path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                   secret: str | None = None):
    """A Datasette serving the live archive at ``archive_path``, mutable, as ``archive``, with
    the stet plugin, its login and its JSON API. The archive must exist. ``secret`` signs the
    session cookies (default: a random one, so a restart logs everyone out)."""
    from datasette.app import Datasette
    from datasette.database import Database

    from .session import Sessions, Throttle

    path = os.fspath(archive_path)
    if not os.path.isfile(path):
        raise NotFound(f"no archive at {path}")
    ds = Datasette(metadata=metadata if metadata is not None else load_metadata(),
                   settings=WORKBENCH_SETTINGS, cors=False, secret=secret)
    ds.add_database(Database(ds, path=path, is_mutable=True), name=DATABASE_NAME)
    if "_memory" in ds.databases:
        ds.remove_database("_memory")
    setattr(ds, WORKBENCH_FLAG, True)
    ds._stet_archive_path = path
    ds._stet_sessions = Sessions()
    ds._stet_throttle = Throttle()
    return ds


def is_workbench(datasette) -> bool:
    return getattr(datasette, WORKBENCH_FLAG, False) is True


def loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(archive_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8002,
        metadata: str | os.PathLike | None = None,
        announce: Callable[[str], Any] = print) -> None:
    """Serve the workbench with uvicorn until interrupted."""
    import uvicorn

    ds = make_workbench(archive_path, metadata=load_metadata(metadata))
    if not loopback(host):
        announce(f"Warning: the workbench listens on {host}: put it behind a TLS reverse proxy "
                 "(docs/workbench.md); passwords and session cookies must not cross a network "
                 "in clear")
    announce(f"stet workbench on http://{host}:{port}/ (log in at /-/login; Ctrl-C stops it)")
    index = _search_index(ds)
    try:
        uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on",
                    proxy_headers=True)
    finally:
        index.close()


def _search_index(ds):
    """The staff's search index, brought up to date in the background from the start, so
    that the first search does not wait for a whole build."""
    import threading

    from .search import StaffSearch

    index = ds._stet_search = StaffSearch(ds._stet_archive_path)
    threading.Thread(target=index.refresh, name="stet-search-index", daemon=True).start()
    return index
