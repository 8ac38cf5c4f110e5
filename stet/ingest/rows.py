"""What one batch of prepared files writes: decided first (:func:`plan`), then written
(:meth:`Plan.execute`), inside the transaction the :class:`~.writer.Writer` holds.

For each file (and each attachment, after its message) the plan decides whether it is new
or a duplicate of a document already archived (or earlier in the batch), and which rows
and which event that makes: a new document's raw bytes (as chunks, or kept once as its text
when the bytes are exactly the text's UTF-8, or streamed from its path for a large file),
its ``documents`` and ``texts`` rows and its ``ingest`` event; a duplicate's
``ingest-duplicate`` event. Executing the plan streams the large files and inserts every
table's rows with one ``executemany`` each, parents before children, then the events.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .. import timeutil
from ..errors import StetError
from ..hashing import CHUNK_SIZE, sha256_text
from ..provenance import Chain
from ..system import open_regular, reason
from .prepared import Prepared, printable


@dataclass
class Options:
    by: str
    source: str | None = None
    title: str | None = None
    restricted: bool = False
    supersedes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # extra provenance (a bag's info)
    #: Set by :func:`~stet.ingest.ingest`: the document superseded is restricted now, so the
    #: new one is.
    supersedes_restricted: bool = False
    #: Set by :func:`~stet.ingest.ingest`: the object store new raw bytes go to
    #: (:func:`stet.blobs.current_store`); None: the archive file.
    store: str | None = None


class FileChanged(StetError):
    """A large file's bytes, streamed into the archive, are not the ones prepared."""


@dataclass
class Plan:
    """The rows and events one batch writes, in the order they go in."""

    next_id: int  # the last document id given
    known: dict[str, int]  # SHA-256 -> id of the documents archived, and those planned
    #: The results of each file given, in order: its own, then its attachments'.
    results: list[list[dict[str, Any]]] = field(default_factory=list)
    streamed: list[Prepared] = field(default_factory=list)  # large files, from their path
    blobs: list[tuple] = field(default_factory=list)  # (sha256, size, storage, chunk_count)
    chunks: list[tuple] = field(default_factory=list)  # (sha256, seq, data)
    documents: list[tuple] = field(default_factory=list)  # in the order of DOCUMENT_COLUMNS
    texts: list[tuple] = field(default_factory=list)  # in the order of TEXT_COLUMNS
    events: list[dict[str, Any]] = field(default_factory=list)  # for Chain.append_many
    store: str | None = None  # the object store the raw bytes go to (None: the file)
    objects: list[tuple[str, bytes]] = field(default_factory=list)  # (sha256, bytes): a pack
    #: Each new document's ingest event details, by SHA-256: where its object is, once written.
    placed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def execute(self, conn) -> None:
        """Write it all: the raw bytes (large files streamed), then each table's rows, then
        the events. In a store-backed archive, the batch's pack goes up while the rows are
        written, and is confirmed before this returns (so before the rows commit)."""
        uploading = self._write_objects() if self.store is not None else None
        try:
            self._write_rows(conn)
        except BaseException:
            if uploading is not None:
                wait([uploading])  # nothing left running; the rows' error is the one told
            raise
        if uploading is not None:
            uploading.result()  # the pack confirmed, or its error raised: no commit

    def _write_rows(self, conn) -> None:
        for item in self.streamed if self.store is None else ():
            stream_blob(conn, item)
        # Parents before children: the blob and document rows go in id order.
        conn.executemany("INSERT INTO blobs (sha256, size, storage, chunk_count) VALUES (?, ?, ?, ?)",
                         self.blobs)
        conn.executemany("INSERT INTO blob_chunks (sha256, seq, data) VALUES (?, ?, ?)", self.chunks)
        conn.executemany(f"INSERT INTO documents ({', '.join(DOCUMENT_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(DOCUMENT_COLUMNS))})", self.documents)
        # A text goes in as its UTF-8 bytes, CAST to TEXT (a verbatim one as the raw bytes):
        # SQLite stores UTF-8 as is, which spares encoding the string again (the bytes are
        # valid UTF-8: the file's, checked by decoding it, or the text's own encoding).
        conn.executemany(f"INSERT INTO texts ({', '.join(TEXT_COLUMNS)}) "
                         "VALUES (?, ?, ?, CAST(? AS TEXT), ?, ?, ?, ?)", self.texts)
        written = Chain(conn).append_many(self.events)
        if self.store is not None:
            conn.executemany(
                'INSERT INTO blob_objects (sha256, store, key, "offset", length, event) '
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(e["details"]["sha256"], self.store, e["details"]["object"]["key"],
                  e["details"]["object"]["offset"], e["details"]["object"]["length"], e["seq"])
                 for e in written if e["action"] == "ingest"])

    def _write_objects(self) -> Future | None:
        """Each large file as an object of its own (streamed from its path, hashed again:
        FileChanged if it changed), confirmed; the batch's small files as one pack, sent in
        another thread (its future). Where each went is added to its ingest event's details."""
        from .. import blobs
        from ..blobs import packs
        store = blobs.store_for(self.store)
        for item in self.streamed:
            try:
                with open_regular(item.path) as stream:
                    store.put_file(item.sha256, item.size, stream)
            except blobs.s3.ObjectChanged:
                raise FileChanged(f"{item.path}: file changed while it was being ingested") from None
            except OSError as exc:
                raise FileChanged(f"{item.path}: {reason(exc)}") from None
            self.placed[item.sha256]["object"] = {"key": store.key(item.sha256), "offset": 0,
                                                  "length": item.size}
        if not self.objects:
            return None
        key, index, send = packs.prepare(store, self.objects)
        for sha, offset, length in index:
            self.placed[sha]["object"] = {"key": key, "offset": offset, "length": length}
        return _uploader().submit(send)


_uploads: list[ThreadPoolExecutor] = []


def _uploader() -> ThreadPoolExecutor:
    """The thread a batch's pack goes up in while its rows are written (one: the batches of
    one writer follow each other)."""
    if not _uploads:
        _uploads.append(ThreadPoolExecutor(1, thread_name_prefix="stet-upload"))
    return _uploads[0]


DOCUMENT_COLUMNS = ("id", "sha256", "title", "filename", "media_type", "size", "source",
                    "restricted", "ingested_by", "ingested_at", "parent", "supersedes")
TEXT_COLUMNS = ("document", "sha256", "length", "text", "extractor", "extractor_version",
                "encoding", "warning")


def plan(conn, options: Options, items: list[Prepared]) -> Plan:
    """Decide what storing ``items`` writes (reading the archive, writing nothing)."""
    next_id = conn.execute("SELECT coalesce(max(id), 0) FROM documents").fetchone()[0]
    batch = Plan(next_id=next_id, known=_known(conn, items), store=options.store)
    for item in items:
        batch.results.append([])
        _plan_file(conn, options, batch, item, None, batch.results[-1])
    return batch


def _plan_file(conn, opts: Options, batch: Plan, item: Prepared, parent: int | None,
               results: list[dict[str, Any]], inherited: bool = False) -> None:
    """One file's rows and event, then its attachments' (each a document of its own)."""
    time = timeutil.iso(timeutil.now())
    given = item.details  # from a bag: its provenance, and a stet bag's record
    # Restricted when asked, when a stet bag says so, when the message it came in is, and
    # when the document it supersedes is (a version inherits its restriction).
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
    existing = batch.known.get(item.sha256)
    if existing is not None:
        details["status"] = "duplicate"
        batch.events.append(dict(time=time, actor=opts.by, action="ingest-duplicate",
                                 subject=f"document:{existing}", document=existing,
                                 details=details))
        warning = None
        if restricted and not restricted_now(conn, existing):
            warning = (f"already public as document {existing}; it stays public "
                       f"(stet restrict {existing})")
        results.append(result(item, existing, "duplicate", warning=warning))
        doc_id = existing
    else:
        doc_id = _plan_new(opts, batch, item, parent, time, details, source, restricted)
        results.append(result(item, doc_id, "new", warning=item.extraction.warning))
    for part in item.parts:
        # an attachment in a bag: the bag's provenance, not its message's stet record
        part.details = part.details or {k: v for k, v in item.details.items()
                                        if k not in ("restricted", "title", "original")}
        part.name = f"{item.name or item.filename}#{part.filename}"
        _plan_file(conn, opts, batch, part, doc_id, results, inherited=restricted)


def _plan_new(opts: Options, batch: Plan, item: Prepared, parent: int | None, time: str,
              details: dict[str, Any], source: str | None, restricted: bool) -> int:
    """A new document's bytes, rows and event; its id."""
    batch.next_id += 1
    doc_id = batch.known[item.sha256] = batch.next_id
    ext = item.extraction
    verbatim = item.data is not None and ext.verbatim  # the bytes are the text's UTF-8
    if batch.store is not None:  # every raw byte in the store, a verbatim text's too
        batch.blobs.append((item.sha256, item.size, "chunks",
                            (item.size + CHUNK_SIZE - 1) // CHUNK_SIZE))
        if item.data is not None:
            batch.objects.append((item.sha256, item.data))
        else:
            batch.streamed.append(item)
        batch.placed[item.sha256] = details
    elif verbatim:  # kept once, as the text
        batch.blobs.append((item.sha256, item.size, "text", 0))
    elif item.data is not None:
        count = (item.size + CHUNK_SIZE - 1) // CHUNK_SIZE
        batch.blobs.append((item.sha256, item.size, "chunks", count))
        batch.chunks.extend((item.sha256, seq, item.data[offset:offset + CHUNK_SIZE])
                            for seq, offset in enumerate(range(0, item.size, CHUNK_SIZE)))
    else:
        batch.streamed.append(item)
    text_sha = item.sha256 if verbatim else item.text_sha256 or sha256_text(ext.text)
    given = item.details
    filename = printable(item.filename)
    title = (opts.title if parent is None else None) or given.get("title") or ext.title or filename
    supersedes = opts.supersedes if parent is None else None
    batch.documents.append((doc_id, item.sha256, title, filename, item.media_type, item.size,
                            source, int(restricted), opts.by, time, parent, supersedes))
    length = item.text_length if item.text_length is not None else len(ext.text)
    # the text's UTF-8 as bytes when there are any (the raw bytes themselves when verbatim):
    # inserted CAST to TEXT, as is
    text = item.data if verbatim else item.text_utf8 if item.text_utf8 is not None else ext.text
    batch.texts.append((doc_id, text_sha, length, text,
                        ext.extractor, ext.extractor_version, ext.encoding, ext.warning))
    details.update(status="new", title=title, text_sha256=text_sha, extractor=ext.extractor,
                   extractor_version=ext.extractor_version)
    if batch.store is not None:
        details["store"] = batch.store  # and "object", once written (Plan._write_objects)
    if parent is not None:
        details["parent"] = parent
    if supersedes is not None:
        details["supersedes"] = supersedes
    if ext.warning:
        details["warning"] = ext.warning
    batch.events.append(dict(time=time, actor=opts.by, action="ingest",
                             subject=f"document:{doc_id}", document=doc_id, details=details))
    return doc_id


def stream_blob(conn, item: Prepared) -> None:
    """Store a large file's bytes chunk by chunk, hashing again as it goes; FileChanged if
    they are not the bytes prepared (or can no longer be read)."""
    digest = hashlib.sha256()
    count = (item.size + CHUNK_SIZE - 1) // CHUNK_SIZE
    conn.execute("INSERT INTO blobs (sha256, size, chunk_count) VALUES (?, ?, ?)",
                 (item.sha256, item.size, count))
    size = 0
    try:
        with open_regular(item.path) as stream:
            for seq, block in enumerate(iter(lambda: stream.read(CHUNK_SIZE), b"")):
                digest.update(block)
                size += len(block)
                conn.execute("INSERT INTO blob_chunks (sha256, seq, data) VALUES (?, ?, ?)",
                             (item.sha256, seq, block))
    except OSError as exc:
        raise FileChanged(f"{item.path}: {reason(exc)}") from None
    if digest.hexdigest() != item.sha256 or size != item.size:
        raise FileChanged(f"{item.path}: file changed while it was being ingested")


def restricted_now(conn, document: int) -> bool:
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


def result(item: Prepared, doc_id: int | None, status: str, *, error: str | None = None,
           warning: str | None = None) -> dict[str, Any]:
    """The result reported for one file (one line of ``stet ingest --json``)."""
    reported: dict[str, Any] = {
        "path": printable(item.path),
        "id": doc_id,
        "sha256": item.sha256 or None,
        "size": item.size if item.sha256 else None,
        "media_type": item.media_type if item.sha256 else None,
        "status": status,
    }
    if error:
        reported["error"] = printable(error)
    if warning:
        reported["warning"] = warning
    return reported
