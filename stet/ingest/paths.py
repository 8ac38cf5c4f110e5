"""What to ingest: the files under the paths given, the links followed, the bags expanded.

:func:`walk` lists files in a stable (sorted) order. Symbolic links are followed only
while they stay inside the tree being walked; anything else (a link out, a loop, a dangling
link, an unreadable folder) is an :class:`Entry` with an error, and the walk goes on. Only
directories and regular files are walked into: sockets, FIFOs and devices in a folder are
passed over, and one reached through a link or named on the command line is refused when
it is opened (:func:`stet.system.open_regular`), never waited on.

A folder that is a BagIt bag is one entry; :func:`expand_bags` validates every bag found
(all before anything is written) and replaces each by its payload files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ..bags import BagFile, is_bag, open_bag
from ..system import reason


@dataclass
class Entry:
    """A file found by :func:`walk`, or a path that could not be walked (``error`` set)."""

    path: str
    error: str | None = None
    bag: bool = False  # a folder that is a BagIt bag, to validate and expand
    details: dict[str, Any] | None = None  # provenance for the event (a bag's info)
    location: str | None = None  # the absolute path (made by the walk, not per file)
    #: The path relative to the folder that was given (or the file's name): what a public
    #: snapshot shows of where the file came from, never the absolute path.
    name: str | None = None
    bag_file: BagFile | None = None  # a payload file of a valid bag


def walk(paths: Iterable[str | os.PathLike], *, exclude: frozenset[str] = frozenset()) -> Iterator[Entry]:
    """Files under each path, recursively, in a stable (sorted) order.

    Symbolic links are followed only while they stay inside the tree being walked; a link
    that leads out of it, a link loop, a dangling link or an unreadable folder is an
    ``Entry`` with an ``error`` naming the path, and the walk goes on. Files whose real path
    is in ``exclude`` (the archive's own files) are passed over.
    """
    folders = {path.rstrip(os.sep) for path in exclude if path.endswith(os.sep)}
    names = {os.path.basename(path) for path in exclude if not path.endswith(os.sep)}
    marks = [os.sep + os.path.basename(folder) + os.sep for folder in folders]
    for entry in _walk(paths):
        # realpath costs a system call per folder of the path: only for a name that matches
        if entry.error:
            yield entry
        elif any(mark in os.sep + entry.path for mark in marks) and any(
                os.path.realpath(entry.path).startswith(folder + os.sep) for folder in folders):
            continue  # inside one of the archive's own folders
        elif (os.path.basename(entry.path) not in names
                or os.path.realpath(entry.path) not in exclude):
            yield entry


def _walk(paths: Iterable[str | os.PathLike]) -> Iterator[Entry]:
    for given in paths:
        path = os.fspath(given)
        if not os.path.lexists(path):
            yield Entry(path, f"{path}: no such file or directory")
            continue
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            yield Entry(path, f"{path}: {reason(exc)}")
            continue
        if os.path.isdir(real):
            yield from _walk_dir(path, real, root=real, seen={real}, absolute=os.path.abspath(path),
                                 relative="")
        else:
            yield Entry(path, location=os.path.abspath(path), name=os.path.basename(real))


def _walk_dir(path: str, real: str, *, root: str, seen: set[str], absolute: str,
              relative: str) -> Iterator[Entry]:
    if is_bag(real):
        yield Entry(path, bag=True, name=relative or os.path.basename(real))
        return
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Entry(path, f"{path}: {reason(exc)}")
        return
    for entry in entries:
        child = os.path.join(path, entry.name)
        location = os.path.join(absolute, entry.name)
        name = f"{relative}/{entry.name}" if relative else entry.name
        if entry.is_symlink():
            try:
                target = os.path.realpath(child, strict=True)
            except OSError as exc:
                yield Entry(child, f"{child}: {reason(exc)}")
                continue
            if target != root and not target.startswith(root + os.sep):
                yield Entry(child, f"{child}: symbolic link leads out of {root}; not followed")
                continue
            if os.path.isdir(target):
                if target in seen or (real + os.sep).startswith(target + os.sep):
                    yield Entry(child, f"{child}: symbolic link loop; not followed")
                    continue
                yield from _walk_dir(child, target, root=root, seen=seen | {target},
                                     absolute=location, relative=name)
            else:
                yield Entry(child, location=location, name=name)
        elif entry.is_dir(follow_symlinks=False):
            target = os.path.join(real, entry.name)
            yield from _walk_dir(child, target, root=root, seen=seen | {target}, absolute=location,
                                 relative=name)
        elif entry.is_file(follow_symlinks=False):
            yield Entry(child, location=location, name=name)
        # sockets, FIFOs and devices are not documents: skipped (reached through a link, or
        # given by name, they are refused when opened: see prepare)


def expand_bags(entries: list[Entry]) -> list[Entry]:
    """Each bag validated (all before any is ingested) and replaced by its payload files."""
    expanded: list[Entry] = []
    for entry in entries:
        if not entry.bag:
            expanded.append(entry)
            continue
        bag = open_bag(entry.path)
        bag.name = entry.name
        expanded.extend(Entry(os.path.join(entry.path, relative), details=bag.details(relative),
                              name=f"{entry.name}/{relative}" if entry.name else relative,
                              bag_file=BagFile(bag, relative))
                        for relative in bag.payload)
    return expanded


def size(entry: Entry) -> int:
    """An entry's size in bytes as the walk left it (0 for an error, or a file now gone)."""
    if entry.error:
        return 0
    try:
        return os.stat(entry.path).st_size
    except OSError:
        return 0


def archive_files(conn) -> frozenset[str]:
    """The real paths of the archive's own files (never ingested into itself): the database,
    its WAL, shared memory and journal; and, ending in ``os.sep``, its own folders beside it,
    whose files are never ingested either: the public snapshots ``stet serve`` keeps
    (``archive.db-public/``), the workbench's private search index
    (``archive.db-workbench/``: restricted texts) and Litestream's state
    (``.archive.db-litestream/``: the archive's own pages)."""
    files = set()
    for _, _name, path in conn.execute("PRAGMA database_list"):
        if path:
            real = os.path.realpath(path)
            for base in (real, real + "-public"):
                files.update({base, base + "-wal", base + "-shm", base + "-journal"})
            folder, name = os.path.split(real)
            files.update(os.path.join(folder, own) + os.sep for own in (
                name + "-public", name + "-workbench", "." + name + "-litestream"))
    return frozenset(files)
