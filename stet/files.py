"""Files written whole or not at all: the one way stet writes a file that others may read.

A file is built under a temporary name beside its target (:func:`temporary`: hidden,
``.NAME.stet-PID.tmp``, on the same file system, locked by its writer with ``flock``) and
renamed into place only when complete, so a reader never sees half a file; the temporary
file is removed whatever happens, and the leftovers of writers that were killed (SIGKILL
included: the kernel lets go of their locks) are removed by the next writer in the folder
(:func:`clean_temporaries`). :func:`write_whole` is that for a stream of text or bytes
(``stet export -o``, ``stet prov -o``); :mod:`stet.publish` builds its snapshots in it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO, Iterator

try:
    import fcntl
except ImportError:  # no flock: leftovers are then never removed, nothing is risked
    fcntl = None


@contextlib.contextmanager
def write_whole(out: str | os.PathLike, mode: str = "w", *,
                encoding: str | None = "utf-8") -> Iterator[IO]:
    """A stream to write ``out`` with (``mode`` ``"w"`` or ``"wb"``): ``out`` replaced once
    the block ends without an error, left as it was otherwise."""
    out = Path(out)
    with temporary(out) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as stream:
            yield stream
        os.replace(tmp, out)


#: A build's temporary file: ``.OUT.stet-PID.tmp`` beside ``OUT`` (the same file system, for
#: an atomic rename). Hidden, and never named like a database (Datasette serves ``*.db``,
#: ``*.sqlite`` and ``*.sqlite3`` from a folder), so nothing serves a half-built file. Earlier
#: versions wrote ``.OUT.PID.tmp``: those are recognised for the ``OUT`` being written only.
TEMPORARY = re.compile(r"\.(.+)\.(stet-)?(\d+)\.tmp(-journal)?")


def remove_with_journal(path: Path) -> None:
    for p in (path, Path(f"{path}-journal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def temporary(out: Path):
    """A new temporary file for ``out``, locked (an exclusive ``flock``) for as long as this
    process writes it, and removed afterwards. Before it is made, the leftovers of builds
    that were killed are removed from the folder (:func:`clean_temporaries`)."""
    clean_temporaries(out.parent, out.name)
    tmp = out.with_name(f".{out.name}.stet-{os.getpid()}.tmp")
    remove_with_journal(tmp)  # left by an earlier process that had this PID
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        remove_with_journal(tmp)
        os.close(fd)


def clean_temporaries(folder: Path, name: str | None = None) -> None:
    """Remove the temporary files of builds that were killed: a file is a leftover when no
    process holds its lock (every build holds one while it lives; the kernel lets go when
    a process dies, even by SIGKILL) and no process has the PID in its name (a build by an
    earlier stet, which took no lock, or a PID since reused: then it is kept, never risked).
    ``name``: the file being written, whose temporary files of earlier versions go too."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = TEMPORARY.fullmatch(entry.name)
        if not match or not (match[2] or match[1] == name) or alive(int(match[3])):
            continue
        path = Path(entry.path)
        if match[4]:  # a journal: goes with its file, or alone once that is gone
            if not path.with_name(entry.name[:-len("-journal")]).exists():
                unlink_quietly(path)
        elif remove_unused(path):
            unlink_quietly(Path(f"{path}-journal"))


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_unused(path: Path) -> bool:
    """Remove ``path`` if no process holds a lock on it; True if it was removed."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            return False
        path.unlink()  # while holding the lock: nobody can take it in between
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass

