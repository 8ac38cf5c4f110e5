"""Ingest: walk paths, hash and extract each file, store it with its event, all or nothing.

The work is split by concern, each step depending only on the ones before it:

- :mod:`.paths`: what to ingest. :func:`walk` finds the files (links followed only inside
  the tree), :func:`~.paths.expand_bags` validates every bag first and expands it.
- :mod:`.prepared`: :func:`prepare` reads one file (streaming, flat memory), hashes it,
  detects its media type and extracts its text. It is pure: it touches no database, so it
  can run in worker processes.
- How files are prepared, chosen by what pays (:func:`_workers`, :func:`_read_ahead`):
  here in the main process; in one read-ahead worker that hands small files' bytes back
  through shared memory (:mod:`.readahead`); or in a pool of workers for formats whose
  extraction is costly (:mod:`.pool`). Results come back in walk order whichever way.
- :mod:`.writer` stores prepared files in batched transactions, each batch planned then
  written (:mod:`.rows`): a crash loses at most the open batch, and a bag is one unit.
  :mod:`.journal` says how they reach the disk: the WAL (checkpointed by a thread) for
  batches, the rollback journal for a large file, so that its bytes are written once.

Only regular files are read (:func:`stet.system.open_regular`): a FIFO, a socket or a device
(reached through a symbolic link, or named on the command line) is an error line for that
path, never a wait, and the rest goes on.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Callable, Iterable, Iterator

from .. import blobs, store
from ..errors import StetError, arg
from ..hashing import CHUNK_SIZE
from ..system import cpus
from . import pool, readahead
from .journal import Journal
from .paths import Entry, archive_files, expand_bags, size, walk
from .prepared import SMALL_FILE, Prepared, drop_verbatim_texts, hash_texts, prepare, prepare_bytes, printable
from .rows import FileChanged, Options, restricted_now
from .writer import Writer

__all__ = ["Entry", "FileChanged", "Options", "Prepared", "SMALL_FILE", "Writer",
           "archive_files", "hash_texts", "ingest", "prepare", "prepare_bytes", "printable",
           "walk"]

#: The process pool is used only when it pays: when there are at least this many files of
#: the formats whose extraction costs more than storing them (PDF, DOCX, HTML, email; guessed
#: from the name, for this decision only). Plain text and binary files are bound by the
#: single writer (SQLite and the event chain), which workers cannot share; shipping their
#: results between processes costs about what preparing them does (benchmarks/README.md).
#: ``workers`` (``stet ingest --workers``) sets the number of worker processes (0: none).
POOL_MIN_FILES = 16
#: Otherwise, on a machine with a second CPU, one worker process reads, hashes and decodes
#: ahead of the writer (:mod:`.readahead`) when there are at least this many files or
#: bytes to ingest; a few small files cost less than starting it.
READ_AHEAD_MIN_FILES = 64
READ_AHEAD_MIN_BYTES = 16 * CHUNK_SIZE
HEAVY_SUFFIXES = (".pdf", ".docx", ".html", ".htm", ".xhtml", ".eml")


def ingest(conn, paths: Iterable[str], options: Options, *, progress: Callable | None = None,
           workers: int | None = None) -> list[dict[str, Any]]:
    """Ingest every file under ``paths``; return one result per file, in walk order.

    Every bag found is validated first; an invalid one raises InvalidInput before anything
    is written. ``progress(files, bytes)``, if given, returns a context manager that yields
    a function called with each file's size as it is stored. ``workers``: that many worker
    processes (0: everything in this process); by default, chosen by what pays
    (:func:`_workers`, :func:`_read_ahead`).
    """
    entries = expand_bags(list(walk(paths, exclude=archive_files(conn))))
    if options.title is not None and sum(1 for e in entries if not e.error) != 1:
        raise StetError(f"{arg('title')} takes a single file")
    sizes = [size(entry) for entry in entries]
    configured, workers = workers, _workers(entries, sizes, workers)
    if options.supersedes is not None:
        options.supersedes_restricted = restricted_now(conn, options.supersedes)
    options.store = blobs.current_store(conn)
    writer = Writer(conn, options)
    bar = progress(len(entries), sum(sizes)) if progress else contextlib.nullcontext(None)
    # The read-ahead worker forks before the checkpoint thread starts (forking with a thread
    # running is unsafe); a worker pool goes without the thread, as it may fork at any time.
    ahead = _read_ahead(entries, sizes, writer, configured) if workers < 1 else None
    writer.journal = Journal(conn, checkpoints=workers < 1)
    with (bar as tick, ahead or contextlib.nullcontext(), writer.journal, store.page_cache(conn, 64),
          _collector_paused()):
        try:
            for (entry, item), nbytes in zip(_prepared(entries, sizes, workers, ahead), sizes):
                if item is None:
                    writer.error(entry.path, entry.error)
                else:
                    item.details = entry.details or {}
                    item.name = entry.name
                    item.bag_file = entry.bag_file
                    writer.add(item)
                if tick is not None:
                    tick(nbytes)
            writer.finish()
        finally:
            writer.abort()  # a bag left unfinished by an error: none of it stays
    return writer.results


def _workers(entries: list[Entry], sizes: list[int], configured: int | None = None) -> int:
    """How many worker processes: ``configured`` if given, else as many as pay: none (0)
    unless there are enough files whose extraction is costly, then one per CPU (the main
    process mostly waits for them)."""
    if configured is not None:
        return configured
    heavy = sum(1 for entry in entries
                if not entry.error and entry.path.lower().endswith(HEAVY_SUFFIXES))
    if heavy < POOL_MIN_FILES:
        return 0
    available = cpus()
    return min(available, 8) if available > 1 else 0


def _read_ahead(entries: list[Entry], sizes: list[int], sink: readahead.Sink,
                configured: int | None = None) -> readahead.ReadAhead | None:
    """A :class:`~.readahead.ReadAhead` worker when it pays: unless the number of workers is
    ``configured`` (0: everything in this process), when there is a second CPU and enough to
    read (:data:`READ_AHEAD_MIN_BYTES` or :data:`READ_AHEAD_MIN_FILES`)."""
    if configured is not None or not readahead.available():
        return None
    files = [(entry.path, entry.location) for entry in entries if not entry.error]
    if len(files) < READ_AHEAD_MIN_FILES and sum(sizes) < READ_AHEAD_MIN_BYTES:
        return None
    return readahead.ReadAhead(files, sink)


def _prepared(entries: list[Entry], sizes: list[int], workers: int,
              ahead: readahead.ReadAhead | None) -> Iterator[tuple[Entry, Prepared | None]]:
    """(entry, prepared file or None for a walk error), in walk order: from the read-ahead
    worker, from ``workers`` worker processes, or prepared here."""
    if ahead is not None:
        items = iter(ahead)
    elif workers > 0:
        files = [i for i, entry in enumerate(entries) if not entry.error]
        items = pool.prepared([(entries[i].path, entries[i].location) for i in files],
                              [sizes[i] for i in files], workers)
    else:
        items = (_ready(prepare(entry.path, entry.location)) for entry in entries if not entry.error)
    for entry in entries:
        yield entry, (None if entry.error else next(items))
    if next(items, None) is not None:  # receives the read-ahead worker's end (and lets it exit)
        raise StetError("the reading process read more files than it was given")


def _ready(item: Prepared) -> Prepared:
    """An item prepared in this process, as a worker would send it: texts hashed, and each
    text that will be stored as bytes (the raw bytes, or its UTF-8) held only as those."""
    drop_verbatim_texts(hash_texts(item))
    return item


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while files are stored: each batch makes tens of
    thousands of short-lived dicts and tuples, none in a cycle, and the collections they
    trigger cost about 8% of the writer's CPU (benchmarks/README.md, issue 14). Memory
    is still freed by reference counting; a cycle made meanwhile waits for the next
    collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
