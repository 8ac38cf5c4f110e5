"""Ingest: walk paths, hash and extract each file, store it with its event, all or nothing.

The work is split in two so that it can run in parallel and stay crash-safe:

- :func:`prepare` reads one file (streaming, flat memory), hashes it, detects its media type
  and extracts its text. It is pure: it touches no database, so it can run in worker
  processes.
- :class:`Writer` stores prepared files in batches, each batch one ``BEGIN IMMEDIATE``
  transaction with ``executemany`` inserts: raw bytes in chunks, the document row, the text
  and the event commit together, or not at all. A crash loses at most the open batch, which
  a re-run ingests as new files (never as duplicates of something missing).

Large files (over :data:`SMALL_FILE` bytes) are not held in memory: they are hashed in one
streaming pass and, unless already archived, stored in a second streaming pass that hashes
again and refuses the file if it changed in between.

Many files are prepared in worker processes (:func:`_prepared`): the walk is cut into tasks
of at most :data:`TASK_FILES` files and :data:`TASK_BYTES` bytes, a few tasks are in flight
at a time (so memory stays flat however many files there are), and results come back in walk
order. Only small files' bytes travel back to the writer; a large file's are streamed by the
writer from its path.

Only regular files are read (:func:`stet.files.open_regular`): a FIFO, a socket or a device
(reached through a symbolic link, or named on the command line) is an error line for that
path, never a wait, and the rest goes on.

A folder that is a BagIt bag is validated completely before anything is written
(:mod:`stet.bags`), and is then one unit: all its payload files are stored in one
transaction, which begins with one ``bag`` event recording the bag (its ``bag-info.txt``
once), and each payload file's event points at it (``"bag": {"event", "hash", "file"}``).
A payload file whose bytes are not the ones validated (changed since), or that can no longer
be read, refuses the bag whole: nothing of it is written.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from . import store, timeutil
from .bags import BagFile, ValidBag, is_bag, open_bag
from .errors import InvalidInput, StetError
from .extract import EXTRACT_LIMIT, Extraction, detect_media_type, extract, too_large
from .files import open_regular
from .hashing import CHUNK_SIZE, sha256_bytes, sha256_file, sha256_text
from .provenance import Chain

#: Files up to this size are read whole (one read, one hash); larger ones are streamed.
SMALL_FILE = 8 * CHUNK_SIZE
#: A batch commits after this many files or this many bytes, whichever comes first.
BATCH_FILES = 1000
BATCH_BYTES = 64 * CHUNK_SIZE
#: A worker's task: at most this many files and bytes (a larger file is a task of its own).
TASK_FILES = 64
TASK_BYTES = 4 * CHUNK_SIZE
#: The process pool is used only when it pays: when there are at least this many files of
#: the formats whose extraction costs more than storing them (PDF, DOCX, HTML, email; guessed
#: from the name, for this decision only). Plain text and binary files are bound by the
#: single writer (SQLite and the event chain), which workers cannot share; shipping their
#: results between processes costs about what preparing them does (benchmarks/README.md).
#: ``$STET_WORKERS`` sets the number of worker processes (0: none).
POOL_MIN_FILES = 16
#: Otherwise, on a machine with a second CPU, one worker process reads, hashes and decodes
#: ahead of the writer (:mod:`stet.readahead`) when there are at least this many files or
#: bytes to ingest; a few small files cost less than starting it.
READ_AHEAD_MIN_FILES = 64
READ_AHEAD_MIN_BYTES = 16 * CHUNK_SIZE
HEAVY_SUFFIXES = (".pdf", ".docx", ".html", ".htm", ".xhtml", ".eml")


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
    names = {os.path.basename(path) for path in exclude}
    for entry in _walk(paths):
        # realpath costs a system call per folder of the path: only for a name that matches
        if (entry.error or os.path.basename(entry.path) not in names
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
            yield Entry(path, f"{path}: {_reason(exc)}")
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
        yield Entry(path, f"{path}: {_reason(exc)}")
        return
    for entry in entries:
        child = os.path.join(path, entry.name)
        location = os.path.join(absolute, entry.name)
        name = f"{relative}/{entry.name}" if relative else entry.name
        if entry.is_symlink():
            try:
                target = os.path.realpath(child, strict=True)
            except OSError as exc:
                yield Entry(child, f"{child}: {_reason(exc)}")
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


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


@dataclass
class Prepared:
    """One file read, hashed and extracted, ready to store."""

    path: str
    filename: str
    slot: int = -1  # where its results go in the writer's list, which keeps walk order
    sha256: str = ""
    size: int = 0
    media_type: str = "application/octet-stream"
    data: bytes | None = None  # the raw bytes of a small file; None for a streamed one
    extraction: Extraction | None = None
    error: str | None = None
    parts: list["Prepared"] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # from its Entry (a bag's info)
    #: Set when a worker dropped a verbatim text (the bytes are the text) before sending the
    #: item back: the writer stores the bytes and needs only the length.
    text_length: int | None = None
    #: Set when a worker did not send a small file's bytes back: the main process reads them
    #: again (from the page cache) and checks their hash, cheaper than shipping them.
    reread: bool = False
    #: The text's SHA-256, computed right after preparing (see :func:`hash_texts`).
    text_sha256: str | None = None
    #: The absolute path recorded in the ingest event (worked out where it was prepared).
    location: str | None = None
    #: The public name of the file (:attr:`Entry.name`); an attachment's is its message's
    #: with ``#`` and its own name.
    name: str | None = None
    #: Where a small file's bytes wait in the read-ahead worker's shared memory (offset,
    #: size) until the main process takes a view of them (:mod:`stet.readahead`).
    shared: tuple[int, int] | None = None
    #: The bag it is a payload file of (:attr:`Entry.bag_file`, set in the main process).
    bag_file: BagFile | None = None


def prepare(path: str, location: str | None = None) -> Prepared:
    """Read, hash, sniff and extract one file. Never raises for a bad file. ``location``:
    its absolute path, if known (recorded in its event). Anything but a regular file is
    refused (``not a regular file``) without waiting on it."""
    item = Prepared(path=path, filename=os.path.basename(path),
                    location=printable(location or os.path.abspath(path)))
    try:
        with open_regular(path) as stream:
            info = os.fstat(stream.fileno())
            if info.st_size <= SMALL_FILE:
                data = stream.read()
                item.data = data
                item.sha256 = sha256_bytes(data)
                item.size = len(data)
            else:
                item.sha256, item.size = sha256_file(stream)
                stream.seek(0)
                data = stream.read(EXTRACT_LIMIT + 1) if item.size <= EXTRACT_LIMIT else stream.read(64 * 1024)
    except OSError as exc:
        item.error = f"{path}: {_reason(exc)}"
        return item
    fill(item, data)
    return item


def prepare_many(paths: list[tuple[str, str | None]]) -> list[Prepared]:
    """:func:`prepare` for a worker's task (one round trip for many small files).

    Neither a file's bytes nor a verbatim text (one whose UTF-8 is the bytes) travel back to
    the main process: pickling and piping them costs more than the main process reading the
    file again from the page cache (see :func:`reread`). Attachments keep their bytes."""
    items = [hash_texts(prepare(path, location)) for path, location in paths]
    pending = list(items)
    while pending:
        item = pending.pop()
        pending.extend(item.parts)
        if item.data is not None and item.extraction is not None and item.extraction.verbatim:
            item.text_length = len(item.extraction.text)
            item.extraction.text = ""
    for item in items:
        if item.data is not None:
            item.data = None
            item.reread = True
    return items


def hash_texts(item: Prepared) -> Prepared:
    """Hash the texts of an item and its parts where it was prepared (in a worker, when there
    are workers), not in the one writer. A verbatim text held with its bytes needs no hash:
    it is the bytes' hash."""
    pending = [item]
    while pending:
        current = pending.pop()
        pending.extend(current.parts)
        ext = current.extraction
        if ext is not None and ext.text and not (ext.verbatim and current.data is not None):
            current.text_sha256 = sha256_text(ext.text)
    return item


def reread(item: Prepared) -> Prepared:
    """Read a small file's bytes again in the main process; refuse it if they changed."""
    try:
        with open_regular(item.path) as stream:
            data = stream.read(SMALL_FILE + 1)
    except OSError as exc:
        item.error = f"{item.path}: {_reason(exc)}"
        return item
    if len(data) != item.size or sha256_bytes(data) != item.sha256:
        item.error = f"{item.path}: file changed while it was being ingested"
        return item
    item.data, item.reread = data, False
    return item


def prepare_bytes(data: bytes, filename: str, path: str) -> Prepared:
    """Prepare bytes that are not a file of their own (an attachment inside a message)."""
    item = Prepared(path=path, filename=filename, data=data, sha256=sha256_bytes(data), size=len(data))
    fill(item, data)
    return item


def fill(item: Prepared, data: bytes) -> None:
    """Media type, text and parts of a prepared item, from its bytes (or their head)."""
    item.media_type = detect_media_type(data[:8192], item.filename)
    # ``data`` is only the head of a file over the limit: judge by the file's size
    item.extraction = too_large(item.size) or extract(data, item.media_type)
    for index, (name, part) in enumerate(item.extraction.parts):
        item.parts.append(prepare_bytes(part, name or f"part-{index + 1}", f"{item.path}#{name}"))
        if item.location:
            item.parts[-1].location = printable(f"{item.location}#{name}")
    item.extraction.parts = []


@dataclass
class Options:
    by: str
    source: str | None = None
    title: str | None = None
    restricted: bool = False
    supersedes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # extra provenance (a bag's info)
    #: Set by :func:`ingest`: the document superseded is restricted now, so the new one is.
    supersedes_restricted: bool = False


class Writer:
    """Stores prepared files in batched transactions; see the module docstring.

    A bag's payload files are one unit: the transaction opened at its first file (with the
    bag's event) stays open through every batch of its files, and commits when a file of
    anything else comes or at :meth:`finish`; a payload file that is not what was validated
    rolls it all back and raises InvalidInput. Call :meth:`abort` when giving up early."""

    def __init__(self, conn, options: Options) -> None:
        self.conn = conn
        self.options = options
        self.batch: list[Prepared] = []
        self.batch_bytes = 0
        self._slots: list[list[dict[str, Any]]] = []
        self._bag: ValidBag | None = None  # the bag whose transaction is open
        self._bag_slot = 0  # the first slot of its files
        self._bag_event: dict[str, Any] = {}  # seq and hash of its event

    @property
    def pending(self) -> int:
        """How many of the files given to :meth:`add` wait in the open batch, not yet
        stored: always the last ones given."""
        return len(self.batch)

    @property
    def results(self) -> list[dict[str, Any]]:
        """One result per file (an attachment's after its message's), in the order added."""
        return [result for slot in self._slots for result in slot]

    def error(self, path: str, message: str) -> None:
        self._slots.append([_result(Prepared(path, os.path.basename(path)), None, "error",
                                    error=message)])

    def add(self, item: Prepared) -> None:
        member = item.bag_file
        self._enter(member.bag if member is not None else None)
        if member is not None:
            if item.error:
                reason = item.error.removeprefix(f"{item.path}: ")
                self._refuse(f"{member.relative}: {reason}")
            if item.sha256 != member.sha256:
                self._refuse(f"{member.relative}: changed since the bag was validated (its "
                             "bytes are not the ones its manifest vouches for)")
            item.details = {**item.details, "bag": {**self._bag_event, **item.details["bag"]}}
        if item.error:
            self.error(item.path, item.error)
            return
        item.slot = len(self._slots)
        self._slots.append([])
        if item.data is None:  # a large file: its own transaction (or its bag's), streamed
            self.flush()
            try:
                self._write([item])
            except FileChanged as exc:
                self._slots[item.slot] = [_result(item, None, "error", error=str(exc))]
            return
        self.batch.append(item)
        self.batch_bytes += item.size + len(item.extraction.text) if item.extraction else item.size
        if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Store the open batch (in its bag's transaction, if it is a bag's, left open)."""
        if self.batch:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            self._write(batch)

    def finish(self) -> None:
        """Store everything given, and commit the last bag."""
        self._enter(None)
        self.flush()

    def abort(self) -> None:
        """Roll back a bag's transaction left open (by an error elsewhere): none of it stays."""
        if self._bag is not None:
            self._rollback_bag()

    def _enter(self, bag: ValidBag | None) -> None:
        """Make ``bag``'s transaction the open one (None: none): commit the one before it, and
        begin a bag's with its event."""
        if bag is self._bag:
            return
        if self._bag is not None:
            self.flush()
            self.conn.execute("COMMIT")
            self._bag = None
        if bag is None:
            return
        self.flush()  # the files before the bag, in their own transaction
        opts = self.options
        self.conn.execute("BEGIN IMMEDIATE")
        self._bag, self._bag_slot = bag, len(self._slots)
        try:
            event = Chain(self.conn).append(
                actor=opts.by, action="bag", subject=f"bag:{printable(bag.name or '')}",
                document=None,
                details={**bag.event_details(), "path": printable(bag.path),
                         "name": printable(bag.name or os.path.basename(bag.path)),
                         "restricted": bool(opts.restricted)})
        except BaseException:
            self._rollback_bag()
            raise
        self._bag_event = {"event": event["seq"], "hash": event["hash"]}

    def _rollback_bag(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        for slot in range(self._bag_slot, len(self._slots)):
            self._slots[slot] = []
        self.batch, self.batch_bytes, self._bag = [], 0, None

    def _refuse(self, reason: str) -> None:
        """Refuse the open bag whole: nothing of it is written."""
        path = self._bag.path
        self._rollback_bag()
        raise InvalidInput(f"invalid bag {printable(path)}: {printable(reason)}")

    def _write(self, items: list[Prepared]) -> None:
        conn = self.conn
        if self._bag is not None:
            try:
                self._insert(items)
            except FileChanged as exc:  # a large file, alone in its write
                member = items[0].bag_file
                self._refuse(f"{member.relative}: "
                             + str(exc).removeprefix(f"{items[0].path}: "))
            except BaseException:
                self._rollback_bag()
                raise
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert(items)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for item in items:
                self._slots[item.slot] = []
            raise

    def _insert(self, items: list[Prepared]) -> None:
        conn = self.conn
        opts = self.options
        next_id = conn.execute("SELECT coalesce(max(id), 0) FROM documents").fetchone()[0]
        known = _known(conn, items)
        blobs, chunks, documents, texts, events = [], [], [], [], []

        def store(item: Prepared, parent: int | None, results: list[dict[str, Any]],
                  inherited: bool = False) -> None:
            nonlocal next_id
            existing = known.get(item.sha256)
            time = timeutil.iso(timeutil.now())
            ext = item.extraction
            given = item.details  # from a bag: its provenance, and a stet bag's record
            # Restricted when asked, when a stet bag says so, when the message it came in is,
            # and when the document it supersedes is (a version inherits its restriction).
            restricted = bool(opts.restricted or given.get("restricted") or inherited
                              or (parent is None and opts.supersedes_restricted))
            source = opts.source if opts.source is not None else given.get("source")
            details = {
                **opts.details,
                **given,
                "path": item.location or printable(item.path),
                "name": printable(item.name or item.filename),
                "filename": printable(item.filename),
                "sha256": item.sha256,
                "size": item.size,
                "media_type": item.media_type,
                "source": source,
                "restricted": restricted,
            }
            if existing is not None:
                details["status"] = "duplicate"
                events.append(dict(time=time, actor=opts.by, action="ingest-duplicate",
                                   subject=f"document:{existing}", document=existing, details=details))
                warning = None
                if restricted and not _restricted_now(conn, existing):
                    warning = (f"already public as document {existing}; it stays public "
                               f"(stet restrict {existing})")
                results.append(_result(item, existing, "duplicate", warning=warning))
                doc_id = existing
            else:
                next_id += 1
                doc_id = next_id
                known[item.sha256] = doc_id
                if item.data is not None and ext.verbatim:
                    blobs.append((item.sha256, item.size, "text", 0))
                    text_sha = item.sha256
                elif item.data is not None:
                    count = (item.size + CHUNK_SIZE - 1) // CHUNK_SIZE
                    blobs.append((item.sha256, item.size, "chunks", count))
                    chunks.extend(
                        (item.sha256, seq, item.data[offset:offset + CHUNK_SIZE])
                        for seq, offset in enumerate(range(0, item.size, CHUNK_SIZE))
                    )
                else:
                    self._stream_blob(item)
                if not (item.data is not None and ext.verbatim):
                    text_sha = item.text_sha256 or sha256_text(ext.text)
                filename = printable(item.filename)
                title = ((opts.title if parent is None else None) or given.get("title")
                         or ext.title or filename)
                supersedes = opts.supersedes if parent is None else None
                documents.append((doc_id, item.sha256, title, filename, item.media_type,
                                  item.size, source, int(restricted), opts.by, time,
                                  parent, supersedes))
                # A verbatim text goes in as its raw bytes, CAST to TEXT: SQLite stores UTF-8
                # as is, which spares encoding the string again (the file is valid UTF-8).
                text_value = item.data if item.data is not None and ext.verbatim else ext.text
                length = item.text_length if item.text_length is not None else len(ext.text)
                texts.append((doc_id, text_sha, length, text_value, ext.extractor,
                               ext.extractor_version, ext.encoding, ext.warning))
                details.update(status="new", title=title, text_sha256=texts[-1][1],
                               extractor=ext.extractor, extractor_version=ext.extractor_version)
                if parent is not None:
                    details["parent"] = parent
                if supersedes is not None:
                    details["supersedes"] = supersedes
                if ext.warning:
                    details["warning"] = ext.warning
                events.append(dict(time=time, actor=opts.by, action="ingest",
                                   subject=f"document:{doc_id}", document=doc_id, details=details))
                results.append(_result(item, doc_id, "new", warning=ext.warning))
            for part in item.parts:
                # an attachment in a bag: the bag's provenance, not its message's stet record
                part.details = part.details or {k: v for k, v in item.details.items()
                                                if k not in ("restricted", "title", "original")}
                part.name = f"{item.name or item.filename}#{part.filename}"
                store(part, doc_id, results, inherited=restricted)

        for item in items:
            store(item, None, self._slots[item.slot])
        # Parents before children: the blob and document rows go in id order.
        conn.executemany("INSERT INTO blobs (sha256, size, storage, chunk_count) VALUES (?, ?, ?, ?)",
                         blobs)
        conn.executemany("INSERT INTO blob_chunks (sha256, seq, data) VALUES (?, ?, ?)", chunks)
        conn.executemany(
            "INSERT INTO documents (id, sha256, title, filename, media_type, size, source, "
            "restricted, ingested_by, ingested_at, parent, supersedes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            documents,
        )
        conn.executemany(
            "INSERT INTO texts (document, sha256, length, text, extractor, extractor_version, "
            "encoding, warning) VALUES (?, ?, ?, CAST(? AS TEXT), ?, ?, ?, ?)",
            texts,
        )
        Chain(conn).append_many(events)

    def _stream_blob(self, item: Prepared) -> None:
        """Store a large file's bytes chunk by chunk, hashing again as it goes."""
        import hashlib

        digest = hashlib.sha256()
        count = (item.size + CHUNK_SIZE - 1) // CHUNK_SIZE
        self.conn.execute("INSERT INTO blobs (sha256, size, chunk_count) VALUES (?, ?, ?)",
                          (item.sha256, item.size, count))
        size = 0
        try:
            with open_regular(item.path) as stream:
                for seq, block in enumerate(iter(lambda: stream.read(CHUNK_SIZE), b"")):
                    digest.update(block)
                    size += len(block)
                    self.conn.execute(
                        "INSERT INTO blob_chunks (sha256, seq, data) VALUES (?, ?, ?)",
                        (item.sha256, seq, block))
        except OSError as exc:
            raise FileChanged(f"{item.path}: {_reason(exc)}") from None
        if digest.hexdigest() != item.sha256 or size != item.size:
            raise FileChanged(f"{item.path}: file changed while it was being ingested")


def _restricted_now(conn, document: int) -> bool:
    """Whether a document is restricted now, by the chain (:data:`store.STATE_ACTIONS`)."""
    row = conn.execute("SELECT restricted FROM document_state WHERE document = ?",
                       (document,)).fetchone()
    return row is None or bool(row[0])


def _known(conn, items: list[Prepared]) -> dict[str, int]:
    """The ids of the documents already archived with these items' (and parts') hashes."""
    hashes: list[str] = []
    pending = list(items)
    while pending:
        item = pending.pop()
        hashes.append(item.sha256)
        pending.extend(item.parts)
    known: dict[str, int] = {}
    for start in range(0, len(hashes), 500):
        chunk = hashes[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        known.update(conn.execute(
            f"SELECT sha256, id FROM documents WHERE sha256 IN ({marks})", chunk).fetchall())
    return known


class FileChanged(StetError):
    pass


def printable(text: str) -> str:
    """Text that can be stored and printed. A file name that is not UTF-8 comes from the
    file system with its bytes kept as lone surrogates, which SQLite and a UTF-8 terminal
    refuse: those bytes are shown as ``\\xNN`` escapes instead (``caf\\xe9.txt``). The file
    itself is still read through its real name."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _result(item: Prepared, doc_id: int | None, status: str, *, error: str | None = None,
            warning: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "path": printable(item.path),
        "id": doc_id,
        "sha256": item.sha256 or None,
        "size": item.size if item.sha256 else None,
        "media_type": item.media_type if item.sha256 else None,
        "status": status,
    }
    if error:
        result["error"] = printable(error)
    if warning:
        result["warning"] = warning
    return result


def archive_files(conn) -> frozenset[str]:
    """The real paths of the archive's own files (never ingested into itself): the database,
    its WAL, shared memory and journal, and the public snapshot that ``stet serve`` keeps
    beside it (``archive.db-public``) with its own."""
    files = set()
    for _, _name, path in conn.execute("PRAGMA database_list"):
        if path:
            real = os.path.realpath(path)
            for base in (real, real + "-public"):
                files.update({base, base + "-wal", base + "-shm", base + "-journal"})
    return frozenset(files)


def ingest(conn, paths: Iterable[str], options: Options, *, progress: Callable | None = None,
           workers: int | None = None) -> list[dict[str, Any]]:
    """Ingest every file under ``paths``; return one result per file, in walk order.

    Every bag found is validated first; an invalid one raises InvalidInput before anything
    is written. ``progress(files, bytes)``, if given, returns a context manager that yields
    a function called with each file's size as it is stored. ``workers``: worker processes
    (default: ``$STET_WORKERS``, else the CPUs available, when there is enough work).
    """
    entries = _open_bags(list(walk(paths, exclude=archive_files(conn))))
    if options.title is not None and sum(1 for e in entries if not e.error) != 1:
        raise StetError("--title takes a single file")
    sizes = [_size(entry) for entry in entries]
    workers = _workers(entries, sizes) if workers is None else workers
    if options.supersedes is not None:
        options.supersedes_restricted = _restricted_now(conn, options.supersedes)
    writer = Writer(conn, options)
    bar = progress(len(entries), sum(sizes)) if progress else contextlib.nullcontext(None)
    # The read-ahead worker forks before the checkpoint thread starts (forking with a thread
    # running is unsafe); a worker pool goes without the thread, as it may fork at any time.
    ahead = _read_ahead(entries, sizes, writer) if workers < 1 else None
    checkpoints = store.background_checkpoints(conn) if workers < 1 else contextlib.nullcontext()
    with bar as tick, ahead or contextlib.nullcontext(), checkpoints, store.page_cache(conn, 64):
        try:
            prepared = _ahead(entries, ahead) if ahead else _prepared(entries, sizes, workers)
            for (entry, item), size in zip(prepared, sizes):
                if item is None:
                    writer.error(entry.path, entry.error)
                else:
                    item.details = entry.details or {}
                    item.name = entry.name
                    item.bag_file = entry.bag_file
                    writer.add(item)
                if tick is not None:
                    tick(size)
            writer.finish()
        finally:
            writer.abort()  # a bag left unfinished by an error: none of it stays
    return writer.results


def _open_bags(entries: list[Entry]) -> list[Entry]:
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


def _size(entry: Entry) -> int:
    if entry.error:
        return 0
    try:
        return os.stat(entry.path).st_size
    except OSError:
        return 0


def _workers(entries: list[Entry], sizes: list[int]) -> int:
    """How many worker processes pay: none (0) unless there are enough files whose extraction
    is costly, then one per CPU (the main process mostly waits for them)."""
    configured = os.environ.get("STET_WORKERS", "").strip()
    if configured.isdigit():
        return int(configured)
    heavy = sum(1 for entry in entries
                if not entry.error and entry.path.lower().endswith(HEAVY_SUFFIXES))
    if heavy < POOL_MIN_FILES:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cpus or 1, 8) if (cpus or 1) > 1 else 0


def _read_ahead(entries: list[Entry], sizes: list[int], writer: Writer):
    """A :class:`~stet.readahead.ReadAhead` worker when it pays: unless ``$STET_WORKERS``
    says otherwise (0: everything in this process), when there is a second CPU and enough to
    read (:data:`READ_AHEAD_MIN_BYTES` or :data:`READ_AHEAD_MIN_FILES`)."""
    from . import readahead  # here: stet.readahead imports this module

    if os.environ.get("STET_WORKERS", "").strip() or not readahead.available():
        return None
    files = [(entry.path, entry.location) for entry in entries if not entry.error]
    if len(files) < READ_AHEAD_MIN_FILES and sum(sizes) < READ_AHEAD_MIN_BYTES:
        return None
    return readahead.ReadAhead(files, writer)


def _ahead(entries: list[Entry], ahead) -> Iterator[tuple[Entry, Prepared | None]]:
    items = iter(ahead)
    for entry in entries:
        yield entry, (None if entry.error else next(items))
    if next(items, None) is not None:  # receives the worker's end (and lets it exit)
        raise StetError("the reading process read more files than it was given")


def _tasks(entries: list[Entry], sizes: list[int]) -> Iterator[list[int]]:
    """Consecutive entries cut into tasks of at most TASK_FILES files and TASK_BYTES bytes."""
    task: list[int] = []
    task_bytes = 0
    for index, size in enumerate(sizes):
        if task and (len(task) >= TASK_FILES or task_bytes + size > TASK_BYTES):
            yield task
            task, task_bytes = [], 0
        task.append(index)
        task_bytes += size
    if task:
        yield task


def _prepared(entries: list[Entry], sizes: list[int],
              workers: int) -> Iterator[tuple[Entry, Prepared | None]]:
    """(entry, prepared file or None for a walk error), in walk order, in ``workers`` worker
    processes (none: in this one). At most two tasks per worker are in flight at a time."""
    if workers < 1:
        for entry in entries:
            yield entry, (None if entry.error else hash_texts(prepare(entry.path, entry.location)))
        return
    methods = multiprocessing.get_all_start_methods()
    # fork: the workers need nothing re-imported; they never touch the parent's database.
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    tasks = _tasks(entries, sizes)
    pool = ProcessPoolExecutor(workers, mp_context=context)
    pending: deque = deque()

    def submit() -> None:
        task = next(tasks, None)
        if task is not None:
            paths = [(entries[i].path, entries[i].location) for i in task if not entries[i].error]
            pending.append((task, pool.submit(prepare_many, paths)))

    try:
        for _ in range(2 * workers):
            submit()
        while pending:
            task, future = pending.popleft()
            items = iter(future.result())
            submit()
            for index in task:
                entry = entries[index]
                item = None if entry.error else next(items)
                yield entry, (reread(item) if item is not None and item.reread else item)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
