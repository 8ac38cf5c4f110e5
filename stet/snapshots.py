"""The served-snapshot cache: the public snapshot of an archive as it stands now, built
once per state of the archive's chain, reused, and held by each server that serves it.

Snapshots live in a folder (:func:`snapshot_folder`), one file per source chain head; a
held snapshot (:class:`Snapshot`, a shared ``flock``) is never removed by another stet
process, and every older one no process holds is (see :func:`open_snapshot`). A new one is
the newest older one brought up to date, in a copy, when it can be (else built whole).
Building a snapshot is :mod:`stet.publish`.
"""

from __future__ import annotations

import os
import re
import sqlite3
import weakref
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # no flock: leftovers are then never removed, nothing is risked
    fcntl = None

from . import files, store
from .errors import InvalidInput, NotFound, StetError
from .provenance import Chain
from .publish import FORMAT, snapshot_record, write_snapshot


def snapshot_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """What a snapshot holds, as its latest own event says (its first, or its latest update:
    :func:`stet.publish.snapshot_record`); None if ``path`` is not one."""
    try:
        conn = store.connect(str(path), mode="read", check=False).conn
    except (StetError, sqlite3.Error):
        return None
    try:
        return snapshot_record(conn)
    finally:
        conn.close()


def source_head(source: str | os.PathLike) -> tuple[int, str]:
    """The source archive's chain length and head hash, read without writing a byte to it
    (``stet serve`` looks at it on every start: DESIGN.md, invariant 9)."""
    if not Path(source).exists():
        raise NotFound(f"no archive at {source}")
    conn = store.connect(str(source), mode="read").conn
    try:
        return Chain(conn).head()
    finally:
        conn.close()


def ensure_snapshot(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The public snapshot of ``source`` as it stands now (see :func:`open_snapshot`), not
    held: a later call, once the archive has changed, may remove it. To serve it, hold it."""
    with open_snapshot(source, cache) as snapshot:
        return snapshot.path


class Snapshot:
    """A snapshot file held open by this process (a shared ``flock``) for as long as it
    serves it: no other stet process removes a held snapshot. ``close()`` (or the end of a
    ``with`` block, or the object being collected, or the process ending, even by SIGKILL)
    lets go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        #: The summary of the build or update that made it (see :func:`stet.publish.publish`:
        #: ``build``, ``reason``), when this call made it; None when it was there already.
        self.built: dict[str, Any] | None = None
        self._finalizer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._finalizer()

    def __fspath__(self) -> str:
        return str(self.path)

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def snapshot_folder(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """Where ``stet serve`` keeps the snapshots of ``source``: ``cache``, else ``ARCHIVE-public``
    beside it."""
    source = Path(source)
    return Path(cache) if cache else source.with_name(source.name + "-public")


#: A snapshot in the folder, named by what it was derived from: the source's chain length and
#: head (its first 16 hex digits) and the snapshot format.
_SNAPSHOT = re.compile(r"(\d+)-([0-9a-f]{16})-v(\d+)\.db")


def open_snapshot(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Snapshot:
    """The public snapshot of ``source`` as it stands now, held (:class:`Snapshot`).

    Snapshots live in a folder (:func:`snapshot_folder`), one file per source chain head,
    ``SEQ-HEAD-vFORMAT.db``. A snapshot for the current head is reused; otherwise one is made
    under a temporary name (the newest older snapshot, held meanwhile, brought up to date in a
    copy, or else built whole: :func:`stet.publish.write_snapshot`; the returned snapshot's
    ``built`` says which) and linked into place without replacing anything, so a file never
    changes once it has its name: a server that opened it serves that one snapshot on every
    route, whatever a second server builds beside it. Every snapshot older than the one
    returned that no process holds is then removed (a server killed with SIGKILL holds
    nothing), and so are the temporary files of builds that were killed."""
    source = Path(source)
    if not source.exists():
        raise NotFound(f"no archive at {source}")
    folder = snapshot_folder(source, cache)
    _snapshot_folder(folder)
    for _attempt in range(5):  # another process may remove an old one just as we take it
        built = None
        seq, head = source_head(source)
        path = folder / f"{seq}-{head[:16]}-v{FORMAT}.db"
        info = snapshot_info(path) if path.exists() else None
        if not (info and info.get("format") == FORMAT
                and info.get("source") == {"events": seq, "head": head}):
            if path.exists():  # not what its name says (damaged): replaced when unused
                files.remove_unused(path)
            base = _newest_before(folder, seq)
            try:
                built = write_snapshot(source, path, base=base.path if base else None,
                                       shown_as=folder, clobber=False, digest=False)
            finally:
                if base is not None:
                    base.close()
        snapshot = hold(path)
        if snapshot is not None:
            snapshot.built = built
            break
    else:
        raise StetError(f"cannot keep a snapshot in {folder}: the archive changed all along")
    _clean_snapshots(folder, keep=path, seq=seq)
    return snapshot


def _newest_before(folder: Path, seq: int) -> Snapshot | None:
    """The newest snapshot in ``folder`` of an earlier state than ``seq`` and of this format,
    held while it is copied (no other process removes it meanwhile), to be brought up to
    date: whether it is one of this archive is :func:`stet.publish.write_snapshot`'s to say."""
    found = []
    for entry in os.scandir(folder):
        match = _SNAPSHOT.fullmatch(entry.name)
        if match and int(match[3]) == FORMAT and int(match[1]) < seq:
            found.append((int(match[1]), entry.name))
    for _seq, name in sorted(found, reverse=True):
        held = hold(folder / name)
        if held is not None:
            return held
    return None


def _snapshot_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    if not folder.parent.is_dir():
        raise NotFound(f"no folder {folder.parent}")
    if folder.exists() or folder.is_symlink():
        # the single snapshot file of earlier versions: a cache, rebuilt in the folder
        if folder.is_file() and not folder.is_symlink() and snapshot_info(folder) is not None:
            folder.unlink()
        else:
            raise InvalidInput(f"{folder} is in the way: stet serve keeps its snapshots in a "
                               "folder of that name")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise StetError(f"cannot write {folder}: {(exc.strerror or str(exc)).lower()}") from None


def hold(path: Path) -> Snapshot | None:
    """``path`` held with a shared lock, or None if it was removed before we got it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return Snapshot(path, fd)


def _clean_snapshots(folder: Path, *, keep: Path, seq: int) -> None:
    """Remove every snapshot in ``folder`` no process holds, except ``keep`` and any newer
    one (another process may be about to take it); then the leftovers of killed builds."""
    for entry in os.scandir(folder):
        match = _SNAPSHOT.fullmatch(entry.name)
        if match and entry.name != keep.name and (
                int(match[1]) <= seq or int(match[3]) != FORMAT):
            files.remove_unused(Path(entry.path))
    files.clean_temporaries(folder)
