# Over 400 lines on purpose: one concern, building a public snapshot; its SQL (what is left
# out, copied, indexed) is kept together so what is published reads in one place.
"""The public snapshot: everything that may be published, nothing that may not.

``publish(source, out)`` writes a new SQLite file that holds the public part of an archive:

- every document that is not restricted and has no restricted ancestor (an attachment of a
  restricted message is restricted too), with its raw bytes (read from the object store
  where the archive keeps them there: a snapshot is self-contained), its text, the
  revisions of its annotations (the schema's triggers rebuild the current state from them;
  ``stet verify`` on the snapshot checks every span again) and the events recorded about it;
- the layers that are not used only on withheld documents;
- full-text indexes (FTS5, ``unicode61``) over document titles and texts
  (``documents_fts``) and over annotation bodies, quotes and tags (``annotations_fts``).

Left out: restricted documents and their descendants, their raw bytes, texts, annotations,
revisions and events; events not tied to a published document (except the creation of a
published layer); and layers used only on withheld documents. References from a published
document to a withheld one (``supersedes``) become NULL. The file is built under a temporary
name, VACUUMed (no free page keeps a byte of anything) and renamed into place, so a reader
never sees half a file.

The snapshot has its own event chain. Its first event (``action = 'publish'``) records the
source archive's chain length and head hash and how many rows of each kind were left out;
every published event follows, re-chained, its ``details`` extended with
``{"original": {"seq": ..., "hash": ...}}`` so that anyone holding the source can match each
one to the original. ``stet verify`` passes on the snapshot.

An earlier snapshot of the same archive is brought up to date instead of built again
(:func:`_update`): the archive's tables are append-only, so what a full build would add is
what was added since the head the snapshot records. A copy of it gets the new rows, the
full-text entries of the new documents and of every annotation whose current state changed,
one ``publish-update`` event recording the new head (as event 1 records the first), then
the new events, re-chained as a full build chains them. When that cannot give the tables a
full build gives (a document restricted, unrestricted or edited since, a layer renamed or
merged, a snapshot made by another version of stet...), the snapshot is built whole and the
summary says why. See docs/publishing.md, "Incremental updates".

The snapshots ``stet serve`` keeps and reuses, one per state of the archive, are
:mod:`stet.snapshots`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import mmap
import os
import re
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from . import files, store
from .annotations import revisions_digest
from ._version import __version__
from .errors import InvalidInput, NotFound, StetError, arg
from .hashing import sha256_file
from .provenance import EVENT_FIELDS, Chain, event_hash, parse_details
from .store import STATE_ACTIONS_SQL, migrations

#: Bumped whenever what a snapshot holds changes, so cached snapshots are rebuilt (and an
#: update never brings a snapshot of another format up to date). 4: raw bytes copied in the
#: order they were stored (an update appends them in that order), and ``publish-update``.
FORMAT = 4

TOKENIZER = "unicode61 remove_diacritics 2"

#: Nonspacing marks (harakat, the Persian hamza above, Latin combining accents, the tatweel)
#: as a regular-expression class body: removed from what the full-text index sees, so
#: ``اعتمد`` finds ``اعتُمد``.
MARK_CHARS = (r"\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5"
              r"\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7"
              r"\u06e8\u06ea-\u06ed\u0640")
#: Invisible breaks inside a word, removed too, so that a word broken across lines is found
#: whole: U+00AD SOFT HYPHEN and U+FFFE, which PDFium puts where a word was hyphenated at the
#: end of a line (``manip\ufffeulation``). Not folded: U+200B ZERO WIDTH SPACE (it separates
#: words in Thai or Khmer, and stands in for a ZWNJ in some Persian text), and ZWNJ and ZWJ
#: (U+200C, U+200D), which separate tokens as they do today, so ``وحشیانه‌ای`` matches as a phrase.
BREAK_CHARS = r"\u00ad\ufffe"
#: Every character :func:`fold` removes, as one character class.
FOLDED = f"[{MARK_CHARS}{BREAK_CHARS}]"
_MARKS = re.compile(FOLDED)


def fold(text: str | None) -> str | None:
    """What the full-text index sees of a text (and of a query): the marks and the breaks
    inside words removed. The stored text keeps them."""
    if text is None:
        return None
    return _MARKS.sub("", text)


def publish(source: str | os.PathLike, out: str | os.PathLike, *, force: bool = False,
            full: bool = False, progress: Callable | None = None) -> dict[str, Any]:
    """Write the public snapshot of ``source`` to ``out``; return a summary, with the source's
    chain as it stood (``archive_head``). Only reads the source: :meth:`stet.Archive.publish`
    records the ``publish`` event naming the snapshot's SHA-256 and chain head.

    When ``out`` is an earlier snapshot of this archive (the head it records is in the
    archive's chain), it is brought up to date (``build``: ``"incremental"``) or, when that
    cannot give what a full build gives, built whole (``"full"``, and ``reason`` says why);
    ``"unchanged"`` when the archive has no event since. ``full`` always builds whole.
    ``force`` replaces any other existing ``out`` (never the source itself).
    ``progress``: given the number of build steps (:data:`STEPS`), a context manager yielding
    ``advance(n)``, advanced after each step (a copy, an index, the VACUUM, the hash).
    """
    source, out = Path(source), Path(out)
    if not source.exists():
        raise NotFound(f"no archive at {source}")
    base = None
    if out.exists():
        if os.path.samefile(source, out):
            raise InvalidInput(f"{out} is the archive itself: publish writes a new file")
        if earlier_snapshot(source, out):
            base = out
        elif not force:
            raise InvalidInput(f"{out} already exists (give {arg('force')} to replace it)")
    if out.parent and not out.parent.is_dir():
        raise NotFound(f"no folder {out.parent}")
    # Only reads the source, and leaves its bytes as they are; one that needs migrating is
    # refused (the facade, which records the publication, migrates it when it opens it).
    store.connect(str(source), mode="read").conn.close()
    counting = progress(STEPS) if progress is not None else contextlib.nullcontext(_ignore)
    with counting as advance:
        summary = write_snapshot(source, out, base=base, full=full, advance=advance)
    summary["archive_head"] = {"length": summary["source"]["events"],
                               "head": summary["source"]["head"]}
    return summary


def _hidden_documents(conn) -> None:
    """``temp.hidden_documents``: what the snapshot leaves out, with restriction read from
    the chain, never from the ``documents`` rows (which a tampered archive could flip).

    Each document's latest state event (:data:`stet.store.STATE_ACTIONS`) decides; one with
    none is withheld. Those events are parsed by Python and must be byte-identical to their
    canonical form and hash to what the chain holds (its next event pointing at that hash),
    so an event rewritten with a duplicate key (json_extract reads the first, Python the
    last) or a forged value stops the publication instead of leaking. Attachments of a
    withheld document are withheld at any depth."""
    restricted: dict[int, bool] = {}
    for _seq, _action, document, details in _state_events(conn):
        restricted[document] = _restricted(details)
    conn.execute("CREATE TEMP TABLE hidden_documents (id INTEGER PRIMARY KEY)")
    hidden = set()
    for doc_id, parent in conn.execute("SELECT id, parent FROM src.documents ORDER BY id"):
        # an attachment is ingested after its message: its parent's fate is known already
        if restricted.get(doc_id, True) or parent in hidden:
            hidden.add(doc_id)
    conn.executemany("INSERT INTO temp.hidden_documents (id) VALUES (?)",
                     ((doc_id,) for doc_id in sorted(hidden)))


def _state_events(conn, where: str = "", params: tuple = ()) -> Iterator[tuple[int, str, int, dict]]:
    """The source's state events (``where`` narrows them: ``AND e.seq > ?``), in chain order,
    as ``(seq, action, document, details)``, each checked as :func:`_hidden_documents` says:
    an altered one stops the publication."""
    rows = conn.execute(
        "SELECT e.seq, e.time, e.actor, e.action, e.subject, e.document, e.details, "
        "e.prev_hash, e.hash, n.prev_hash FROM src.events e "
        "LEFT JOIN src.events n ON n.seq = e.seq + 1 "
        f"WHERE e.document IS NOT NULL AND e.action IN {STATE_ACTIONS_SQL} {where} ORDER BY e.seq",
        params)
    for row in rows:
        event = dict(zip(EVENT_FIELDS + ("hash",), row[:9]))
        seq = event["seq"]
        try:
            details, not_canonical = parse_details(event["details"])
            sound = (not_canonical is None and isinstance(details, dict)
                     and event_hash(event) == event["hash"] and row[9] in (None, event["hash"]))
        except (TypeError, ValueError):
            sound = False
        if not sound:
            raise StetError(f"event {seq} of the archive was altered (run stet verify); "
                            "nothing was published")
        yield seq, event["action"], event["document"], details


def _restricted(details: dict[str, Any]) -> bool:
    """Whether a state event's details leave its document restricted (absent: restricted)."""
    return details.get("restricted", True) is not False


def public_details(details: dict[str, Any]) -> dict[str, Any]:
    """An event's details as a public snapshot shows them: a file's path becomes its public
    name (relative to the folder that was ingested, or the file name), a bag's path its
    folder's name; the same inside the provenance a stet bag carried from another archive.
    Where raw bytes were stored (:data:`_PRIVATE_KEYS`: the object store an ingest or a
    migration wrote them to, and the object) is left out: a snapshot never names the store."""
    out = {key: value for key, value in details.items() if key not in _PRIVATE_KEYS}
    if isinstance(out.get("path"), str):
        out["path"] = out.get("name") or _basename(out["path"])
    if isinstance(out.get("file"), str):
        out["file"] = _basename(out["file"])
    bag = out.get("bag")
    if isinstance(bag, dict) and isinstance(bag.get("path"), str):
        out["bag"] = {**bag, "path": _basename(bag["path"])}
    original = out.get("original")
    if isinstance(original, dict) and isinstance(original.get("events"), list):
        out["original"] = {**original, "events": [
            {**e, "details": public_details(e["details"])}
            if isinstance(e, dict) and isinstance(e.get("details"), dict) else e
            for e in original["events"]]}
    return out


#: Keys of an event's details a snapshot never shows: where the archive keeps raw bytes
#: (``store``: ``s3://BUCKET/PREFIX``, ``object``: its key and range). The snapshot holds the
#: bytes themselves (:func:`_copy_stored_bytes`).
_PRIVATE_KEYS = frozenset(("store", "object"))


def _basename(path: str) -> str:
    head, _, fragment = path.partition("#")  # an attachment: message#name
    name = os.path.basename(head.rstrip("/\\")) or head
    return f"{name}#{fragment}" if fragment else name

#: The events of restricted submissions: a restricted copy of bytes that are public. The
#: document stays public, but nothing this submission recorded (its path, source, submitter,
#: bag) is ever published.
_RESTRICTED_SUBMISSION = ("(action = 'ingest-duplicate' AND "
                          "coalesce(json_extract(details, '$.restricted'), 1) != 0)")

_LEFT_OUT = {
    "documents": "SELECT count(*) FROM temp.hidden_documents",
    "texts": "SELECT count(*) FROM src.texts WHERE document IN temp.hidden_documents",
    "blobs": "SELECT count(*) FROM src.blobs WHERE sha256 IN "
             "(SELECT sha256 FROM src.documents WHERE id IN temp.hidden_documents)",
    "annotations": "SELECT count(*) FROM src.annotations WHERE document IN temp.hidden_documents",
    "annotation_revisions": "SELECT count(*) FROM src.annotation_revisions "
                            "WHERE document IN temp.hidden_documents",
    "layers": "SELECT count(*) FROM src.layers WHERE id NOT IN temp.kept_layers",
    "events": "SELECT (SELECT count(*) FROM src.events) "
              "- (SELECT count(*) FROM temp.published_events)",
}

#: The events a snapshot copies: those about a published document, except the events of
#: restricted submissions; the creation of each kept layer (by ``layer-add``, or by the
#: ``layer-rename`` that named it), each merge of a kept layer; each import that wrote revision
#: rows (trimmed to the published ones by :func:`_published_import`); and the event of each
#: bag that was not a restricted submission and that a published event points at. Only those
#: after ``:since`` (0 for a full build; an update's earlier head).
_PUBLISHED_EVENTS = f"""
CREATE TEMP TABLE published_events AS SELECT seq FROM src.events
WHERE seq > :since AND (
      (document IS NOT NULL AND document NOT IN temp.hidden_documents
       AND NOT {_RESTRICTED_SUBMISSION})
   OR (document IS NULL AND action = 'layer-add' AND subject IN
       (SELECT 'layer:' || name FROM src.layers WHERE id IN temp.kept_layers))
   OR (document IS NULL AND action = 'layer-rename'
       AND json_extract(details, '$.id') IN temp.kept_layers)
   OR (document IS NULL AND action = 'layer-merge'
       AND json_extract(details, '$.from') IN temp.kept_layers
       AND json_extract(details, '$.into') IN temp.kept_layers)
   OR (document IS NULL AND action = 'import'
       AND json_extract(details, '$.rows.first') IS NOT NULL)
   OR (document IS NULL AND action = 'bag'
       AND coalesce(json_extract(details, '$.restricted'), 0) = 0
       AND seq IN (SELECT json_extract(details, '$.bag.event') FROM src.events
                   WHERE document NOT IN temp.hidden_documents AND NOT {_RESTRICTED_SUBMISSION}
                   AND json_extract(details, '$.bag.event') IS NOT NULL)))
"""

#: The current title and source of each published document above ``:documents``, from the
#: chain. (src.document_state would read main's tables: a view's names resolve in the order
#: temp, main, attached. The same query, on src, into a temp table.)
_CURRENT_STATE = (
    "CREATE TEMP TABLE current_state AS SELECT d.id AS document, "
    "json_extract(e.details, '$.title') AS title, "
    "json_extract(e.details, '$.source') AS source FROM src.documents d "
    "JOIN src.events e ON e.seq = (SELECT max(seq) FROM src.events "
    f"INDEXED BY events_document_state WHERE document = d.id "
    f"AND action IN {STATE_ACTIONS_SQL}) "
    "WHERE d.id > :documents AND d.id NOT IN temp.hidden_documents")

#: The raw bytes kept in the archive file; those in an object store are read from it by
#: :func:`_copy_stored_bytes`, right after this statement.
_COPY_CHUNKS = (
    "INSERT INTO main.blob_chunks (id, sha256, seq, data) SELECT id, sha256, seq, data "
    "FROM src.blob_chunks WHERE sha256 IN "
    "(SELECT sha256 FROM main.blobs WHERE rowid > :blobs) ORDER BY id")

#: What is copied, in this order. A full build copies every row (each mark below every id:
#: :data:`_ALL`); an update only the rows above its marks, the largest ids the earlier
#: snapshot holds (``:blobs`` is a rowid of the snapshot's ``blobs``). The source's rows
#: are append-only, so the rows an update adds are those a full build would add after the
#: ones it holds, in the same order.
_COPY = [
    # a blob an object store holds whose bytes are exactly its document's text (the text's
    # SHA-256 is theirs) is kept once, as the text, as an archive without a store keeps it
    "INSERT INTO main.blobs (sha256, size, storage, chunk_count) "
    "SELECT b.sha256, b.size, CASE WHEN v.sha256 IS NULL THEN b.storage ELSE 'text' END, "
    "CASE WHEN v.sha256 IS NULL THEN b.chunk_count ELSE 0 END FROM src.blobs b "
    "LEFT JOIN (SELECT o.sha256 FROM src.blob_objects o JOIN src.documents d "
    "ON d.sha256 = o.sha256 JOIN src.texts t ON t.document = d.id AND t.sha256 = o.sha256) v "
    "ON v.sha256 = b.sha256 AND b.storage = 'chunks' WHERE b.sha256 IN "
    "(SELECT sha256 FROM src.documents WHERE id > :documents "
    "AND id NOT IN temp.hidden_documents) ORDER BY b.rowid",
    _COPY_CHUNKS,
    # the current title and source (from the chain); nothing in a snapshot is restricted
    "INSERT INTO main.documents (id, sha256, title, filename, media_type, size, source, "
    "restricted, ingested_by, ingested_at, parent, supersedes) "
    "SELECT d.id, d.sha256, s.title, d.filename, d.media_type, d.size, s.source, 0, "
    "d.ingested_by, d.ingested_at, d.parent, CASE WHEN d.supersedes IN temp.hidden_documents "
    "THEN NULL ELSE d.supersedes END FROM src.documents d JOIN temp.current_state s "
    "ON s.document = d.id WHERE d.id > :documents AND d.id NOT IN temp.hidden_documents "
    "ORDER BY d.id",
    "INSERT INTO main.texts SELECT * FROM src.texts WHERE document > :documents "
    "AND document NOT IN temp.hidden_documents",
    "INSERT INTO main.layers SELECT * FROM src.layers WHERE id IN temp.kept_layers "
    "AND id NOT IN (SELECT id FROM main.layers) ORDER BY id",
    # how carried annotations were placed, before their revisions (an orphan's needs it);
    # the annotation each came from only when that one is published too
    "INSERT INTO main.annotation_anchoring (id, annotation, origin, anchoring, score, event) "
    "SELECT x.id, x.annotation, CASE WHEN o.document IN temp.hidden_documents THEN NULL "
    "ELSE x.origin END, x.anchoring, x.score, x.event FROM src.annotation_anchoring x "
    "JOIN src.annotations a ON a.id = x.annotation LEFT JOIN src.annotations o ON o.id = x.origin "
    "WHERE x.id > :anchoring AND a.document NOT IN temp.hidden_documents ORDER BY x.id",
    "INSERT INTO main.annotation_revisions SELECT * FROM src.annotation_revisions "
    "WHERE id > :revisions AND document NOT IN temp.hidden_documents ORDER BY id",
]


def _copy_stored_bytes(conn, source: Path, marks: dict[str, int]) -> None:
    """The raw bytes of each blob newly copied (above ``:blobs``) whose bytes the archive
    keeps in an object store (a ``src.blob_objects`` row) and the file no longer holds: read
    from the store, each object once (a pack's files in one ranged read, a large file
    streamed), written into ``main.blob_chunks`` in pieces of CHUNK_SIZE and checked against
    the blob's SHA-256 and size, so the snapshot is self-contained and names no store. Their
    ids, ``-((rowid << 32) | seq)`` (the blob's rowid in the source), are below every id the
    source has: an update and a full build give the same rows."""
    stored = conn.execute(
        'SELECT s.rowid, m.sha256, m.size, m.chunk_count, o.store, o.key, o."offset", '
        "o.length FROM main.blobs m JOIN src.blobs s ON s.sha256 = m.sha256 "
        "JOIN src.blob_objects o ON o.sha256 = m.sha256 WHERE m.rowid > :blobs "
        "AND m.storage = 'chunks' "
        "AND NOT EXISTS (SELECT 1 FROM main.blob_chunks c WHERE c.sha256 = m.sha256) "
        'ORDER BY o.store, o.key, o."offset"', marks)
    from . import blobs
    from .blobs import packs

    for (url, key), group in itertools.groupby(stored, key=lambda row: (row[4], row[5])):
        group = list(group)
        if len(group) == 1:  # an object of its own (a large file), or a pack's only
            # published file: its range streamed
            rowid, sha, size, count, _, _, offset, length = group[0]
            _write_chunks(conn, rowid, sha, size, count, blobs.read_object(
                {"store": url, "key": key, "offset": offset, "length": length}))
            continue
        # a pack: its files (each smaller than a large file) in one ranged read
        start = group[0][6]
        end = max(row[6] + row[7] for row in group)
        reading = blobs.store_for(url).read_range(key, start, end - start)
        for row, data in packs.read_ranges(reading, start, [(r, r[6], r[7]) for r in group]):
            rowid, sha, size, count = row[0][:4]
            _write_chunks(conn, rowid, sha, size, count, iter((data,)))


def _write_chunks(conn, rowid: int, sha: str, size: int, count: int,
                  stream: Iterator[bytes]) -> None:
    digest = hashlib.sha256()
    seq = total = 0
    for piece in _pieces(stream, digest):
        conn.execute("INSERT INTO main.blob_chunks (id, sha256, seq, data) "
                     "VALUES (?, ?, ?, ?)", (-((rowid << 32) | seq), sha, seq, piece))
        seq += 1
        total += len(piece)
    if digest.hexdigest() != sha or total != size or seq != count:
        raise StetError(f"the raw bytes of blob {sha[:12]} read from the object store "
                        "are not the ones recorded (run stet verify); nothing was "
                        "published")


def _pieces(stream: Iterator[bytes], digest) -> Iterator[bytes]:
    """``stream``'s bytes again, cut at CHUNK_SIZE as the archive file cuts them (the store
    may hand them over in other sizes), each hashed into ``digest`` as it passes."""
    from .hashing import CHUNK_SIZE

    pending = bytearray()
    for data in stream:
        digest.update(data)
        pending += data
        while len(pending) >= CHUNK_SIZE:
            yield bytes(pending[:CHUNK_SIZE])
            del pending[:CHUNK_SIZE]
    if pending:
        yield bytes(pending)


#: The triggers wrote each current state in the layer its revisions were made in; a renamed
#: or merged layer's annotations are where the chain moved them (as in src).
_LAYER_MOVES = (
    "UPDATE main.annotations SET layer = s.layer FROM src.annotations s "
    "WHERE s.id = main.annotations.id AND s.layer != main.annotations.layer")

#: The marks of a full build: below any id (every row is copied).
_ALL = {"documents": -(1 << 63), "blobs": -(1 << 63), "anchoring": -(1 << 63),
        "revisions": -(1 << 63)}

#: What ``annotations_fts`` holds of an annotation (an active one: a retracted note is
#: history, not a match): its id and its folded body, quote and tags.
_ANNOTATION_FTS = ("id, stet_fold(body), stet_fold(exact), "
                   "stet_fold((SELECT group_concat(value, ' ') FROM json_each(tags)))")

_FTS = [
    f"CREATE VIRTUAL TABLE documents_fts USING fts5(title, text, content='', "
    f"tokenize='{TOKENIZER}')",
    "INSERT INTO documents_fts (rowid, title, text) SELECT d.id, stet_fold(d.title), "
    "stet_fold(t.text) FROM documents d LEFT JOIN texts t ON t.document = d.id",
    f"CREATE VIRTUAL TABLE annotations_fts USING fts5(body, exact, tags, content='', "
    f"tokenize='{TOKENIZER}')",
    f"INSERT INTO annotations_fts (rowid, body, exact, tags) SELECT {_ANNOTATION_FTS} "
    "FROM annotations WHERE status = 'active'",
    "INSERT INTO documents_fts (documents_fts) VALUES ('optimize')",
    "INSERT INTO annotations_fts (annotations_fts) VALUES ('optimize')",
]


#: The steps of a build that :func:`publish` reports: choosing what is published, each copy,
#: the layer moves, the events, each full-text statement, the VACUUM, and the snapshot's hash.
#: An update reports the same number, in fewer, larger advances.
STEPS = 1 + len(_COPY) + 1 + 1 + len(_FTS) + 1 + 1

#: What every snapshot's own events say is left out.
_RULE = ("restricted documents and their attachments, with their raw bytes, "
         "texts, annotations, revisions and events; events not tied to a "
         "published document or layer; layers used only on withheld documents")


def _ignore(n: int) -> None:
    return None


def _build(source: Path, path: Path, advance: Callable[[int], Any] = _ignore) -> dict[str, Any]:
    conn = store.connect(str(path), mode="build").conn
    try:
        conn.create_function("stet_fold", 1, fold, deterministic=True)
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        conn.execute("BEGIN")  # one read snapshot of the source for everything below
        seq, head = _src_head(conn)
        _hidden_documents(conn)
        conn.execute(_CURRENT_STATE, _ALL)
        conn.execute(
            "CREATE TEMP TABLE kept_layers AS SELECT id FROM src.layers WHERE id IN "
            "(SELECT layer FROM src.annotation_revisions WHERE document NOT IN temp.hidden_documents) "
            "OR id NOT IN (SELECT layer FROM src.annotation_revisions) "
            # where a renamed or merged layer's published annotations are now
            "OR id IN (SELECT layer FROM src.annotations WHERE document NOT IN temp.hidden_documents)"
        )
        conn.execute(_PUBLISHED_EVENTS, {"since": 0})
        left_out = {name: conn.execute(sql).fetchone()[0] for name, sql in _LEFT_OUT.items()}
        advance(1)
        source_info = {"events": seq, "head": head}
        chain = Chain(conn)
        genesis = chain.append(
            actor="stet publish", action="publish", subject=f"archive:{head}",
            details={"source": source_info, "left_out": left_out, "rule": _RULE,
                     "format": FORMAT, "stet": __version__},
        )
        for sql in _COPY:
            conn.execute(sql, _ALL)
            if sql is _COPY_CHUNKS:
                _copy_stored_bytes(conn, source, _ALL)
            advance(1)
        conn.execute(_LAYER_MOVES)
        advance(1)
        _copy_events(conn)
        advance(1)
        for sql in _FTS:
            conn.execute(sql)
            advance(1)
        head_seq, head_hash = chain.head()
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        # VACUUM copies the file into a temporary one and back over it through the journal:
        # in memory (the build's mode) that journal holds every page of the old file, and the
        # build's large page cache fills for both copies: together more memory than the
        # snapshot is large (7.3 GB at 6 GB, benchmarks/scale.py). This file is not in its
        # place yet (a crash leaves a temporary file, removed by the next publish): no
        # journal, and SQLite's default cache, with which VACUUM is faster too (783 MB
        # snapshot: 1.8 GB peak to 0.28 GB, VACUUM 3.8 s to 2.8 s).
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA cache_size = -2000")
        conn.execute("VACUUM")
        advance(1)
        counts = _published_counts(conn)
    finally:
        conn.close()
    return {"source": source_info, "left_out": left_out, "published": counts,
            "head": {"events": head_seq, "hash": head_hash}, "time": genesis["time"],
            "build": "full", "reason": None}


def _published_counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM main.{t}").fetchone()[0]
            for t in ("documents", "annotations", "annotation_revisions", "layers", "events")}


# -- bringing an earlier snapshot up to date ------------------------------------------------


class NotIncremental(Exception):
    """Why an earlier snapshot cannot be brought up to date: it is built whole instead, and
    the summary's ``reason`` is this message."""


def snapshot_record(conn) -> dict[str, Any] | None:
    """What a snapshot says it holds: the details of its latest own event, its first
    (``publish``) or its latest ``publish-update``: ``source`` (the archive's chain length
    and head it holds), ``left_out``, ``format``, ``stet``. None if ``conn`` is not on a
    snapshot. (A snapshot copies no event without a document named ``publish`` or
    ``publish-update``: those are its own.)"""
    try:
        first = conn.execute("SELECT action, document FROM main.events WHERE seq = 1").fetchone()
        if first is None or first[0] != "publish" or first[1] is not None:
            return None
        row = conn.execute(
            "SELECT details FROM main.events WHERE document IS NULL AND ((seq = 1) OR "
            "(action = 'publish-update' AND actor = 'stet publish')) "
            "ORDER BY seq DESC LIMIT 1").fetchone()
        details = json.loads(row[0])
    except (sqlite3.Error, TypeError, ValueError):
        return None
    return details if isinstance(details, dict) else None


def _file_record(path: Path) -> tuple[dict[str, Any] | None, bool]:
    """:func:`snapshot_record` of the file at ``path`` (None if it is not a snapshot), and
    whether its schema is the one this stet's migrations make."""
    try:
        db = store.connect(str(path), mode="read", check=False)
    except (StetError, sqlite3.Error):
        return None, False
    try:
        record = snapshot_record(db.conn)
        try:
            current = record is not None and not migrations.pending(db)
        except sqlite3.Error:
            current = False
        return record, current
    finally:
        db.conn.close()


def _recorded_head(record: dict[str, Any] | None) -> tuple[int, str] | None:
    source = record.get("source") if isinstance(record, dict) else None
    if not isinstance(source, dict):
        return None
    seq, head = source.get("events"), source.get("head")
    if type(seq) is not int or seq < 0 or not isinstance(head, str):
        return None
    return seq, head


def _holds(conn, schema: str, head: tuple[int, str]) -> bool:
    """Whether the chain in ``schema`` holds ``head`` (its length and hash) as it stood."""
    seq, hash_ = head
    if seq == 0:
        return hash_ == store.GENESIS_HASH
    row = conn.execute(f"SELECT hash FROM {schema}.events WHERE seq = ?", (seq,)).fetchone()
    return row is not None and row[0] == hash_


def earlier_snapshot(source: str | os.PathLike, path: str | os.PathLike) -> dict[str, Any] | None:
    """The record (:func:`snapshot_record`) of the file at ``path`` if it is a public snapshot
    of ``source`` as it stood at some point of its chain (the head it records is in the
    source's chain), whichever stet made it; else None."""
    record, _current = _file_record(Path(path))
    head = _recorded_head(record)
    if head is None:
        return None
    conn = store.connect(str(source), mode="read").conn
    try:
        return record if _holds(conn, "main", head) else None
    finally:
        conn.close()


class _Flush:
    """``fsync`` of a file in a thread of its own: the disk writes while this process goes
    on (the kernel releases the GIL). :func:`_wait` for it, and for its error. (Once: on
    ext4 each ``fsync`` commits the journal, with every other writer's data; flushing a copy
    again and again as it grows was faster on a quiet machine and much slower on a busy one.)"""

    def __init__(self, path: Path) -> None:
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, args=(path,), name="stet-flush",
                                       daemon=True)
        self.thread.start()

    def _run(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.error = exc


def _copy_file(stream, path: Path) -> None:
    """Copy the open file ``stream`` into ``path`` (the kernel copies where it can)."""
    size = os.fstat(stream.fileno()).st_size
    with open(path, "r+b") as target:  # empty (and not truncated: ext4 would flush it on close)
        done = 0
        if hasattr(os, "copy_file_range"):
            try:
                while done < size:
                    n = os.copy_file_range(stream.fileno(), target.fileno(), size - done,
                                           done, done)
                    if n == 0:
                        break
                    done += n
            except OSError:  # another file system, or a kernel without it
                pass
        stream.seek(done)
        target.seek(done)
        shutil.copyfileobj(stream, target, 1 << 20)


def _update(source: Path, base: Path, tmp: Path, flushes: list,
            advance: Callable[[int], Any] = _ignore) -> dict[str, Any]:
    """Bring the snapshot ``base`` up to date with ``source``, in ``tmp`` (a copy of it),
    unsynced: the caller waits for ``flushes`` (each a :class:`_Flush` started here) and
    flushes it once more before it moves it into place.

    Raises :class:`NotIncremental` when that cannot give the tables a full build gives;
    returns ``build: "unchanged"`` (and writes nothing) when ``base`` holds the source's
    head already. The archive's tables are append-only, so a full build would write the
    earlier snapshot's rows and then the rows added since, in the same order, provided no
    row the earlier snapshot holds or left out would now be written otherwise: a document's
    restriction, title or source (state events since), a layer's annotations (renames,
    merges), a layer kept or left out, a bag event it left out now pointed at."""
    record, current = _file_record(base)
    if record is None:
        raise NotIncremental(f"{base.name} is not a public snapshot")
    if record.get("format") != FORMAT or record.get("stet") != __version__ or not current:
        raise NotIncremental(f"{base.name} was made by stet {record.get('stet')} "
                             f"(snapshot format {record.get('format')}); this is stet "
                             f"{__version__} (format {FORMAT})")
    since = _recorded_head(record)
    left_before = record.get("left_out")
    if since is None or not isinstance(left_before, dict) \
            or type(left_before.get("events")) is not int:
        raise NotIncremental(f"{base.name} does not say which head of the archive it holds")
    conn = store.connect(str(source), mode="read").conn
    try:  # before paying for the copy
        if not _holds(conn, "main", since):
            raise NotIncremental(f"the archive's chain does not hold the head {base.name} "
                                 f"records (event {since[0]})")
        unchanged = Chain(conn).head() == since
    finally:
        conn.close()
    if unchanged:
        advance(STEPS - 1)
        db = store.connect(str(base), mode="read")
        try:
            return {"source": {"events": since[0], "head": since[1]}, "left_out": left_before,
                    "published": _published_counts(db.conn),
                    "head": dict(zip(("events", "hash"), Chain(db.conn).head())),
                    "time": None, "build": "unchanged", "reason": None}
        finally:
            db.conn.close()
    with open(base, "rb") as stream:
        _copy_file(stream, tmp)
    flushes.append(_Flush(tmp))  # the copy goes to disk while the rows are added
    conn = store.connect(str(tmp), mode="build").conn
    try:
        conn.create_function("stet_fold", 1, fold, deterministic=True)
        conn.execute("PRAGMA secure_delete = ON")  # no byte of a replaced index entry kept
        conn.execute("PRAGMA synchronous = OFF")  # flushed by write_snapshot, before the rename
        if snapshot_record(conn) != record:
            raise NotIncremental(f"{base.name} changed while it was read")
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        conn.execute("BEGIN")  # one read snapshot of the source for everything below
        seq, head = _src_head(conn)
        if not _holds(conn, "src", since):
            raise NotIncremental(f"the archive's chain does not hold the head {base.name} "
                                 f"records (event {since[0]})")
        marks = _marks(conn)
        _delta_documents(conn, since[0], marks["documents"])
        _delta_layers(conn, since[0], marks["revisions"])
        _delta_events(conn, since[0], marks["documents"], marks["blobs"])
        left_out = {name: conn.execute(sql).fetchone()[0]
                    for name, sql in _LEFT_OUT.items() if name != "events"}
        left_out["events"] = left_before["events"] + conn.execute(
            "SELECT (SELECT count(*) FROM src.events WHERE seq > ?) "
            "- (SELECT count(*) FROM temp.published_events)", (since[0],)).fetchone()[0]
        chain = Chain(conn)
        before = chain.head()
        update = chain.append(
            actor="stet publish", action="publish-update", subject=f"archive:{head}",
            details={"source": {"events": seq, "head": head}, "left_out": left_out,
                     "since": {"events": since[0], "head": since[1]}, "rule": _RULE,
                     "format": FORMAT, "stet": __version__})
        # the annotations whose current state changes: out of the index, back in below
        conn.execute("CREATE TEMP TABLE touched (id INTEGER PRIMARY KEY)")
        conn.execute(  # (not DISTINCT: SQLite would read every revision in its unique index)
            "INSERT OR IGNORE INTO temp.touched SELECT annotation FROM src.annotation_revisions "
            "WHERE id > :revisions AND document NOT IN temp.hidden_documents", marks)
        conn.execute(
            f"INSERT INTO annotations_fts (annotations_fts, rowid, body, exact, tags) "
            f"SELECT 'delete', {_ANNOTATION_FTS} FROM main.annotations "
            "WHERE status = 'active' AND id IN temp.touched")
        conn.execute(_CURRENT_STATE, marks)
        for sql in _COPY:
            conn.execute(sql, marks)
            if sql is _COPY_CHUNKS:
                _copy_stored_bytes(conn, source, marks)
        conn.execute(_LAYER_MOVES + " AND main.annotations.id IN temp.touched")
        _copy_events(conn)
        conn.execute(
            "INSERT INTO documents_fts (rowid, title, text) SELECT d.id, stet_fold(d.title), "
            "stet_fold(t.text) FROM main.documents d LEFT JOIN main.texts t "
            "ON t.document = d.id WHERE d.id > :documents", marks)
        conn.execute(
            f"INSERT INTO annotations_fts (rowid, body, exact, tags) SELECT {_ANNOTATION_FTS} "
            "FROM main.annotations WHERE status = 'active' AND id IN temp.touched")
        head_seq, head_hash = chain.head()
        added = {
            "documents": conn.execute("SELECT count(*) FROM main.documents WHERE id > ?",
                                      (marks["documents"],)).fetchone()[0],
            "annotation_revisions": conn.execute(
                "SELECT count(*) FROM main.annotation_revisions WHERE id > ?",
                (marks["revisions"],)).fetchone()[0],
            "events": head_seq - before[0] - 1,
        }
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        counts = _published_counts(conn)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    advance(STEPS - 1)
    return {"source": {"events": seq, "head": head}, "left_out": left_out, "published": counts,
            "head": {"events": head_seq, "hash": head_hash}, "time": update["time"],
            "build": "incremental", "reason": None,
            "since": {"events": since[0], "head": since[1]}, "added": added}


def _marks(conn) -> dict[str, int]:
    """The largest id of each kind the earlier snapshot holds (``blobs``: its own rowid):
    what an update copies is above them. Below any id where it holds none."""
    floor = _ALL["documents"]
    return {name: conn.execute(f"SELECT coalesce(max({column}), ?) FROM main.{table}",
                               (floor,)).fetchone()[0]
            for name, table, column in (("documents", "documents", "id"),
                                        ("blobs", "blobs", "rowid"),
                                        ("anchoring", "annotation_anchoring", "id"),
                                        ("revisions", "annotation_revisions", "id"))}


def _delta_documents(conn, since: int, mark: int) -> None:
    """``temp.hidden_documents`` as a full build would make it now, from the earlier
    snapshot (which holds exactly the documents published when it was made: it left out the
    others up to ``mark``, its largest id) and the state events since ``since``, each
    checked as a full build checks it. Raises :class:`NotIncremental` when a document the
    snapshot holds would be left out or changed, or one it left out would be published."""
    latest: dict[int, tuple[int, str, dict]] = {}
    for seq, action, document, details in _state_events(conn, "AND e.seq > ?", (since,)):
        latest[document] = (seq, action, details)
    for seq, action, document, details in _state_events(conn, "AND e.document > ?", (mark,)):
        latest[document] = (seq, action, details)  # every state event of a newer document

    def held(doc: int) -> bool:
        return conn.execute("SELECT 1 FROM main.documents WHERE id = ?", (doc,)).fetchone() \
            is not None

    hidden_after: set[int] = set()
    for doc, parent in conn.execute(
            "SELECT id, parent FROM src.documents WHERE id > ? ORDER BY id", (mark,)).fetchall():
        state = latest.get(doc)
        if state is None or _restricted(state[2]) or (parent is not None and (
                parent in hidden_after if parent > mark else not held(parent))):
            hidden_after.add(doc)
            continue
        first = conn.execute("SELECT min(seq) FROM src.events WHERE document = ?",
                             (doc,)).fetchone()[0]
        if first is not None and first <= since:
            raise NotIncremental(f"event {state[0]} ({state[1]}) publishes document {doc}, "
                                 "which the snapshot left out")
    for doc, (seq, action, details) in sorted(latest.items()):
        if doc > mark:
            continue
        parent = conn.execute("SELECT parent FROM src.documents WHERE id = ?",
                              (doc,)).fetchone()[0]
        hidden_now = _restricted(details) or (parent is not None and (
            parent in hidden_after if parent > mark else not held(parent)))
        if held(doc):
            if hidden_now:
                raise NotIncremental(f"event {seq} ({action}) withholds document {doc}, "
                                     "which the snapshot holds")
            if conn.execute(
                    "SELECT 1 FROM main.documents d, src.events e WHERE d.id = ? AND e.seq = ? "
                    "AND d.title IS json_extract(e.details, '$.title') "
                    "AND d.source IS json_extract(e.details, '$.source')",
                    (doc, seq)).fetchone() is None:
                raise NotIncremental(f"event {seq} ({action}) changes the title or source of "
                                     f"document {doc}, which the snapshot holds")
        elif not hidden_now:
            raise NotIncremental(f"event {seq} ({action}) publishes document {doc}, which "
                                 "the snapshot left out")
    conn.execute("CREATE TEMP TABLE hidden_documents (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO temp.hidden_documents SELECT id FROM src.documents WHERE id <= ? "
                 "AND id NOT IN (SELECT id FROM main.documents) ORDER BY id", (mark,))
    conn.executemany("INSERT INTO temp.hidden_documents (id) VALUES (?)",
                     ((doc,) for doc in sorted(hidden_after)))


def _delta_layers(conn, since: int, mark: int) -> None:
    """``temp.kept_layers`` as a full build would make it now: the earlier snapshot's layers,
    and each layer created since that has published annotations or none at all. Raises
    :class:`NotIncremental` for a rename or merge since (annotations the snapshot holds
    would move), a layer it left out that now has published annotations (its creation event
    would come before events it holds), and one of its layers kept only for having no
    annotation at all that now has only withheld ones."""
    moved = conn.execute(
        "SELECT seq, action FROM src.events WHERE seq > ? "
        "AND action IN ('layer-rename', 'layer-merge') ORDER BY seq LIMIT 1", (since,)).fetchone()
    if moved is not None:
        raise NotIncremental(f"event {moved[0]} ({moved[1]}) moves annotations to another layer")
    used = {layer: bool(published) for layer, published in conn.execute(
        "SELECT layer, max(document NOT IN temp.hidden_documents) "
        "FROM src.annotation_revisions WHERE id > ? GROUP BY layer", (mark,))}
    created = {row[0] for row in conn.execute(
        "SELECT json_extract(details, '$.id') FROM src.events WHERE seq > ? "
        "AND action = 'layer-add' AND document IS NULL", (since,))}
    conn.execute("CREATE TEMP TABLE kept_layers (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO temp.kept_layers SELECT id FROM main.layers ORDER BY id")
    for layer, name in conn.execute("SELECT id, name FROM src.layers WHERE id NOT IN "
                                    "(SELECT id FROM main.layers) ORDER BY id").fetchall():
        if layer in created:
            if used.get(layer, True):  # published annotations, or none at all
                conn.execute("INSERT INTO temp.kept_layers (id) VALUES (?)", (layer,))
        elif used.get(layer):
            raise NotIncremental(f"layer {name!r}, which the snapshot left out, now has "
                                 "published annotations")
    for layer, published in used.items():
        if published:
            continue
        row = conn.execute("SELECT name FROM main.layers WHERE id = ?", (layer,)).fetchone()
        if row is not None and conn.execute(
                "SELECT 1 FROM main.annotations WHERE layer = ? LIMIT 1", (layer,)).fetchone() \
                is None and conn.execute(
                "SELECT 1 FROM main.annotation_revisions WHERE layer = ? LIMIT 1",
                (layer,)).fetchone() is None:
            raise NotIncremental(f"layer {row[0]!r} is now used only on withheld documents")


def _delta_events(conn, since: int, documents: int, blobs: int) -> None:
    """``temp.published_events``: the events since ``since`` that a full build would copy.
    Raises :class:`NotIncremental` when one of them points at a bag event the snapshot left
    out (a full build would copy that one, before events it holds), and when the raw bytes of
    a newly published document were stored before bytes the snapshot holds (a full build
    would copy them in that order)."""
    conn.execute(_PUBLISHED_EVENTS, {"since": since})
    for seq, bag in conn.execute(
            "SELECT e.seq, json_extract(e.details, '$.bag.event') FROM src.events e "
            "WHERE e.seq IN temp.published_events AND e.document IS NOT NULL "
            "AND json_extract(e.details, '$.bag.event') <= ?", (since,)).fetchall():
        if conn.execute(
                "SELECT 1 FROM src.events WHERE seq = ? AND action = 'bag' AND document IS NULL "
                "AND coalesce(json_extract(details, '$.restricted'), 0) = 0", (bag,)).fetchone() \
                and not conn.execute(
                    "SELECT 1 FROM main.events WHERE action = 'bag' AND document IS NULL "
                    "AND json_extract(details, '$.original.seq') = ?", (bag,)).fetchone():
            raise NotIncremental(f"event {seq} points at bag event {bag}, which the snapshot "
                                 "left out")
    last = conn.execute("SELECT s.rowid FROM main.blobs m JOIN src.blobs s ON s.sha256 = m.sha256 "
                        "WHERE m.rowid = ?", (blobs,)).fetchone()
    first = conn.execute(
        "SELECT min(rowid) FROM src.blobs WHERE sha256 IN (SELECT sha256 FROM src.documents "
        "WHERE id > ? AND id NOT IN temp.hidden_documents)", (documents,)).fetchone()[0]
    if last is not None and first is not None and first <= last[0]:
        raise NotIncremental("the raw bytes of a newly published document were stored before "
                             "bytes the snapshot holds")


def _src_head(conn) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM src.events ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, store.GENESIS_HASH)


def _copy_events(conn, batch: int = 5000) -> None:
    """Re-chain the published events, each pointing back at its original, as the public may
    see them (:func:`public_details`). An import's event is kept, naming only the file and the
    revision rows it wrote that are published (their digest recomputed over the snapshot's
    rows), so every published revision is still held to the chain. Which events: see
    :data:`_PUBLISHED_EVENTS`."""
    chain = Chain(conn)
    cursor = conn.execute(
        "SELECT seq, time, actor, action, subject, document, details, hash FROM src.events "
        "WHERE seq IN temp.published_events ORDER BY seq"
    )
    while rows := cursor.fetchmany(batch):
        events = []
        for seq, time, actor, action, subject, document, details, hash_ in rows:
            value = json.loads(details)
            if action == "import":
                value = _published_import(conn, value)
                if value is None:
                    continue
            elif action == "reanchor":
                value = _published_reanchor(conn, value)
            else:
                value = public_details(value)
            if action == "layer-rename" and value.get("from") is not None and not conn.execute(
                    "SELECT 1 FROM temp.kept_layers WHERE id = ?", (value["from"],)).fetchone():
                # renamed from a layer used only on withheld documents: its name stays out
                value.update({"from": None, "from_name": None})
            value["original"] = {"seq": seq, "hash": hash_}
            events.append(dict(time=time, actor=actor, action=action, subject=subject,
                               document=document, details=value))
        chain.append_many(events)


def _published_import(conn, details: dict[str, Any]) -> dict[str, Any] | None:
    """What a snapshot keeps of an import's event: the file's name and the published part of
    the revision rows it wrote, and of the anchoring rows of the carried annotations it
    brought (None when none of its revision rows is published)."""
    rows = details.get("rows") or {}
    first, last = rows.get("first"), rows.get("last")
    present = conn.execute(
        "SELECT min(id), max(id) FROM main.annotation_revisions WHERE id BETWEEN ? AND ?",
        (first, last)).fetchone()
    if present[0] is None:
        return None
    count, digest = revisions_digest(conn, present[0], present[1])
    out = {"file": _basename(str(details.get("file", ""))),
           "rows": {"first": present[0], "last": present[1], "count": count, "sha256": digest}}
    if isinstance(details.get("anchoring"), dict):
        anchoring = _published_digest(conn, details["anchoring"])
        if anchoring is not None:
            out["anchoring"] = anchoring
    return out


def _published_digest(conn, recorded: dict[str, Any]) -> dict[str, Any] | None:
    """The range and digest of the anchoring rows an event recorded, over the snapshot's
    (None when none of them is published)."""
    from .annotations.versions import anchoring_digest

    first, last = conn.execute(
        "SELECT min(id), max(id) FROM main.annotation_anchoring WHERE id BETWEEN ? AND ?",
        (recorded.get("first"), recorded.get("last"))).fetchone()
    if first is None:
        return None
    count, sha = anchoring_digest(conn, first, last)
    return {"first": first, "last": last, "count": count, "sha256": sha}


def _published_reanchor(conn, details: dict[str, Any]) -> dict[str, Any]:
    """What a snapshot keeps of a reanchor event (its document, the newer version, is
    published): the older version only if it is published too, and the digests of the
    revision and anchoring rows recomputed over the snapshot's (an anchoring row names the
    annotation it came from only when that one is published)."""
    from .annotations.versions import anchoring_digest

    out = dict(details)
    older = out.get("from")
    if older is not None and not conn.execute(
            "SELECT 1 FROM main.documents WHERE id = ?", (older,)).fetchone():
        out["from"] = None
    for key, table, digest in (("rows", "annotation_revisions", revisions_digest),
                               ("anchoring", "annotation_anchoring", anchoring_digest)):
        recorded = out.get(key)
        if not isinstance(recorded, dict):
            continue
        first, last = conn.execute(
            f"SELECT min(id), max(id) FROM main.{table} WHERE id BETWEEN ? AND ?",
            (recorded.get("first"), recorded.get("last"))).fetchone()
        if first is None:
            out.pop(key)
            continue
        count, sha = digest(conn, first, last)
        out[key] = {"first": first, "last": last, "count": count, "sha256": sha}
    return out


def file_hash(path: Path) -> tuple[str, int]:
    """The SHA-256 and size of the file at ``path`` (a snapshot: read through a mapping whose
    pages are let go as they are hashed, so memory stays flat)."""
    with open(path, "rb") as stream:
        return _stream_hash(stream)


def _stream_hash(stream) -> tuple[str, int]:
    """The SHA-256 and size of an open file, hashed from a mapping of it where it can be (no
    copy of each block into Python: a snapshot is hundreds of megabytes)."""
    try:
        mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty, or a file that cannot be mapped
        return sha256_file(stream)
    with mapped:
        digest = hashlib.sha256()
        view = memoryview(mapped)
        step = 1 << 24
        try:
            for start in range(0, len(view), step):
                digest.update(view[start:start + step])
                # the pages hashed leave this process (the kernel's cache keeps them): its
                # memory stays flat, not as large as the snapshot
                mapped.madvise(mmap.MADV_DONTNEED, start, min(step, len(view) - start))
        finally:
            view.release()
        return digest.hexdigest(), len(mapped)


def write_snapshot(source: Path, out: Path, *, base: Path | None = None, full: bool = False,
                   reason: str | None = None, shown_as: Path | None = None,
                   clobber: bool = True, digest: bool = True,
                   advance: Callable[[int], Any] = _ignore) -> dict[str, Any]:
    """Build the snapshot of ``source`` under a temporary name beside ``out``, then move it
    into place: replacing ``out`` (``clobber``), or, if another process got there first,
    leaving theirs. Errors name ``shown_as`` (else ``out``).

    ``base``: an earlier snapshot of ``source`` (``out`` itself, or another file), brought up
    to date in a copy (:func:`_update`) unless ``full``; when that cannot be done, the
    snapshot is built whole and the summary's ``reason`` says why (else ``reason`` as given).
    ``base`` itself is only read. ``digest``: whether an update computes the new file's
    SHA-256 (a full build always does)."""
    flushes: list[_Flush] = []
    try:
        with files.temporary(out) as tmp:
            summary = None
            if full and base is not None:
                reason = "a full build was asked for"
            elif base is not None:
                try:
                    summary = _update(source, base, tmp, flushes, advance)
                except NotIncremental as exc:
                    reason = str(exc)
                except sqlite3.DatabaseError as exc:  # a damaged snapshot, a row refused
                    if isinstance(exc, sqlite3.OperationalError):  # a full disk: no use
                        raise
                    reason = f"{base.name} could not be brought up to date ({exc})"
                if summary is None:  # what the update left goes: a new file below
                    _wait(flushes)
                    os.truncate(tmp, 0)
            if summary is None:
                summary = _build(source, tmp, advance)
                summary["reason"] = reason
            if summary["build"] == "unchanged" and base is not None and _same_file(base, out):
                summary["sha256"], summary["size"] = file_hash(out)
                advance(1)
            elif summary["build"] == "full":
                summary["sha256"], summary["size"] = file_hash(tmp)
                advance(1)
                _place(tmp, out, clobber)
            else:  # an update, unsynced: flushed and moved into place while it is hashed
                if summary["build"] == "unchanged":  # another file: copied into place
                    with open(base, "rb") as stream:
                        _copy_file(stream, tmp)
                flushes.append(_Flush(tmp))
                hashing = _Hashing(tmp) if digest else None
                try:
                    _wait(flushes)
                    _place(tmp, out, clobber)
                except BaseException:
                    if hashing is not None:
                        hashing.thread.join()
                    raise
                hashed = hashing.result() if hashing is not None else None
                summary["sha256"], summary["size"] = hashed or (None, out.stat().st_size)
                advance(1)
    except (OSError, sqlite3.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StetError(f"cannot write {shown_as or out}: {reason.lower()}") from None
    finally:
        for flush in flushes:  # after an error: nothing is left running
            flush.thread.join()
    summary["path"] = str(out)
    return summary


def _place(tmp: Path, out: Path, clobber: bool) -> None:
    if clobber:
        os.replace(tmp, out)
    else:
        _link_new(tmp, out)


class _Hashing:
    """:func:`file_hash` of a file in a thread of its own (hashlib and the reads release the
    GIL), from a descriptor opened here: the file may be renamed meanwhile."""

    def __init__(self, path: Path) -> None:
        self.stream = open(path, "rb")
        self.value: tuple[str, int] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="stet-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.value = _stream_hash(self.stream)
        except BaseException as exc:  # raised again by result()
            self.error = exc
        finally:
            self.stream.close()

    def result(self) -> tuple[str, int]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


def _wait(flushes: list[_Flush]) -> None:
    """Wait for every flush started (raising the first error), and forget them."""
    try:
        for flush in flushes:
            flush.thread.join()
        for flush in flushes:
            if flush.error is not None:
                raise flush.error
    finally:
        flushes.clear()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _link_new(tmp: Path, out: Path) -> None:
    """``tmp`` becomes ``out`` unless ``out`` exists already (then ``tmp`` is left to go)."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not out.exists():
            os.replace(tmp, out)
