# Over 400 lines on purpose: one concern, building a public snapshot; its SQL (what is left
# out, copied, indexed) is kept together so what is published reads in one place.
"""The public snapshot: everything that may be published, nothing that may not.

``publish(source, out)`` writes a new SQLite file that holds the public part of an archive:

- every document that is not restricted and has no restricted ancestor (an attachment of a
  restricted message is restricted too), with its raw bytes, its text, the revisions of its
  annotations (the schema's triggers rebuild the current state from them; ``stet verify``
  on the snapshot checks every span again) and the events recorded about it;
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

The snapshots ``stet serve`` keeps and reuses, one per state of the archive, are
:mod:`stet.snapshots`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Callable

from . import files, store
from .annotations import revisions_digest
from ._version import __version__
from .errors import InvalidInput, NotFound, StetError, arg
from .hashing import sha256_file
from .provenance import EVENT_FIELDS, Chain, event_hash, parse_details
from .store import STATE_ACTIONS_SQL

#: Bumped whenever what a snapshot holds changes, so cached snapshots are rebuilt.
FORMAT = 3

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
            progress: Callable | None = None) -> dict[str, Any]:
    """Write the public snapshot of ``source`` to ``out``; return a summary, with the source's
    chain as it stood (``archive_head``). Only reads the source: :meth:`stet.Archive.publish`
    records the ``publish`` event naming the snapshot's SHA-256 and chain head.
    ``force`` replaces an existing ``out`` (never the source itself).
    ``progress``: given the number of build steps (:data:`STEPS`), a context manager yielding
    ``advance(n)``, advanced after each step (a copy, an index, the VACUUM, the hash).
    """
    source, out = Path(source), Path(out)
    if not source.exists():
        raise NotFound(f"no archive at {source}")
    if out.exists():
        if os.path.samefile(source, out):
            raise InvalidInput(f"{out} is the archive itself: publish writes a new file")
        if not force:
            raise InvalidInput(f"{out} already exists (give {arg('force')} to replace it)")
    if out.parent and not out.parent.is_dir():
        raise NotFound(f"no folder {out.parent}")
    # Only reads the source, and leaves its bytes as they are; one that needs migrating is
    # refused (the facade, which records the publication, migrates it when it opens it).
    store.connect(str(source), mode="read").conn.close()
    counting = progress(STEPS) if progress is not None else contextlib.nullcontext(_ignore)
    with counting as advance:
        summary = write_snapshot(source, out, advance=advance)
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
    rows = conn.execute(
        "SELECT e.seq, e.time, e.actor, e.action, e.subject, e.document, e.details, "
        "e.prev_hash, e.hash, n.prev_hash FROM src.events e "
        "LEFT JOIN src.events n ON n.seq = e.seq + 1 "
        f"WHERE e.document IS NOT NULL AND e.action IN {STATE_ACTIONS_SQL} ORDER BY e.seq")
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
        restricted[event["document"]] = details.get("restricted", True) is not False
    conn.execute("CREATE TEMP TABLE hidden_documents (id INTEGER PRIMARY KEY)")
    hidden = set()
    for doc_id, parent in conn.execute("SELECT id, parent FROM src.documents ORDER BY id"):
        # an attachment is ingested after its message: its parent's fate is known already
        if restricted.get(doc_id, True) or parent in hidden:
            hidden.add(doc_id)
    conn.executemany("INSERT INTO temp.hidden_documents (id) VALUES (?)",
                     ((doc_id,) for doc_id in sorted(hidden)))


def public_details(details: dict[str, Any]) -> dict[str, Any]:
    """An event's details as a public snapshot shows them: a file's path becomes its public
    name (relative to the folder that was ingested, or the file name), a bag's path its
    folder's name; the same inside the provenance a stet bag carried from another archive."""
    out = dict(details)
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
#: bag that was not a restricted submission and that a published event points at.
_PUBLISHED_EVENTS = f"""
CREATE TEMP TABLE published_events AS SELECT seq FROM src.events
WHERE (document IS NOT NULL AND document NOT IN temp.hidden_documents
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
                   AND json_extract(details, '$.bag.event') IS NOT NULL))
"""

_COPY = [
    "INSERT INTO main.blobs SELECT * FROM src.blobs WHERE sha256 IN "
    "(SELECT sha256 FROM src.documents WHERE id NOT IN temp.hidden_documents)",
    "INSERT INTO main.blob_chunks (id, sha256, seq, data) SELECT id, sha256, seq, data "
    "FROM src.blob_chunks WHERE sha256 IN "
    "(SELECT sha256 FROM main.blobs) ORDER BY id",
    # the current title and source (from the chain); nothing in a snapshot is restricted
    "INSERT INTO main.documents (id, sha256, title, filename, media_type, size, source, "
    "restricted, ingested_by, ingested_at, parent, supersedes) "
    "SELECT d.id, d.sha256, s.title, d.filename, d.media_type, d.size, s.source, 0, "
    "d.ingested_by, d.ingested_at, d.parent, CASE WHEN d.supersedes IN temp.hidden_documents "
    "THEN NULL ELSE d.supersedes END FROM src.documents d JOIN temp.current_state s "
    "ON s.document = d.id WHERE d.id NOT IN temp.hidden_documents ORDER BY d.id",
    "INSERT INTO main.texts SELECT * FROM src.texts WHERE document NOT IN temp.hidden_documents",
    "INSERT INTO main.layers SELECT * FROM src.layers WHERE id IN temp.kept_layers ORDER BY id",
    # how carried annotations were placed, before their revisions (an orphan's needs it);
    # the annotation each came from only when that one is published too
    "INSERT INTO main.annotation_anchoring (id, annotation, origin, anchoring, score, event) "
    "SELECT x.id, x.annotation, CASE WHEN o.document IN temp.hidden_documents THEN NULL "
    "ELSE x.origin END, x.anchoring, x.score, x.event FROM src.annotation_anchoring x "
    "JOIN src.annotations a ON a.id = x.annotation LEFT JOIN src.annotations o ON o.id = x.origin "
    "WHERE a.document NOT IN temp.hidden_documents ORDER BY x.id",
    "INSERT INTO main.annotation_revisions SELECT * FROM src.annotation_revisions "
    "WHERE document NOT IN temp.hidden_documents ORDER BY id",
    # the triggers wrote each current state in the layer its revisions were made in; a
    # renamed or merged layer's annotations are where the chain moved them (as in src)
    "UPDATE main.annotations SET layer = s.layer FROM src.annotations s "
    "WHERE s.id = main.annotations.id AND s.layer != main.annotations.layer",
]

_FTS = [
    f"CREATE VIRTUAL TABLE documents_fts USING fts5(title, text, content='', "
    f"tokenize='{TOKENIZER}')",
    "INSERT INTO documents_fts (rowid, title, text) SELECT d.id, stet_fold(d.title), "
    "stet_fold(t.text) FROM documents d LEFT JOIN texts t ON t.document = d.id",
    f"CREATE VIRTUAL TABLE annotations_fts USING fts5(body, exact, tags, content='', "
    f"tokenize='{TOKENIZER}')",
    "INSERT INTO annotations_fts (rowid, body, exact, tags) SELECT id, stet_fold(body), "
    "stet_fold(exact), stet_fold((SELECT group_concat(value, ' ') FROM json_each(tags))) "
    "FROM annotations WHERE status = 'active'",  # a retracted note is history, not a match
    "INSERT INTO documents_fts (documents_fts) VALUES ('optimize')",
    "INSERT INTO annotations_fts (annotations_fts) VALUES ('optimize')",
]


#: The steps of a build that :func:`publish` reports: choosing what is published, each copy,
#: the events, each full-text statement, the VACUUM, and the snapshot's hash.
STEPS = 1 + len(_COPY) + 1 + len(_FTS) + 1 + 1


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
        # src.document_state would read main's tables (a view's names resolve in the order
        # temp, main, attached): the same query, on src, into a temp table.
        conn.execute(
            "CREATE TEMP TABLE current_state AS SELECT d.id AS document, "
            "json_extract(e.details, '$.title') AS title, "
            "json_extract(e.details, '$.source') AS source FROM src.documents d "
            "JOIN src.events e ON e.seq = (SELECT max(seq) FROM src.events "
            f"INDEXED BY events_document_state WHERE document = d.id "
            f"AND action IN {STATE_ACTIONS_SQL}) WHERE d.id NOT IN temp.hidden_documents")
        conn.execute(
            "CREATE TEMP TABLE kept_layers AS SELECT id FROM src.layers WHERE id IN "
            "(SELECT layer FROM src.annotation_revisions WHERE document NOT IN temp.hidden_documents) "
            "OR id NOT IN (SELECT layer FROM src.annotation_revisions) "
            # where a renamed or merged layer's published annotations are now
            "OR id IN (SELECT layer FROM src.annotations WHERE document NOT IN temp.hidden_documents)"
        )
        conn.execute(_PUBLISHED_EVENTS)
        left_out = {name: conn.execute(sql).fetchone()[0] for name, sql in _LEFT_OUT.items()}
        advance(1)
        source_info = {"events": seq, "head": head}
        chain = Chain(conn)
        genesis = chain.append(
            actor="stet publish", action="publish", subject=f"archive:{head}",
            details={
                "source": source_info,
                "left_out": left_out,
                "rule": "restricted documents and their attachments, with their raw bytes, "
                        "texts, annotations, revisions and events; events not tied to a "
                        "published document or layer; layers used only on withheld documents",
                "format": FORMAT,
                "stet": __version__,
            },
        )
        for sql in _COPY:
            conn.execute(sql)
            advance(1)
        _copy_events(conn)
        advance(1)
        for sql in _FTS:
            conn.execute(sql)
            advance(1)
        head_seq, head_hash = chain.head()
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        conn.execute("VACUUM")
        advance(1)
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("documents", "annotations", "annotation_revisions", "layers", "events")}
    finally:
        conn.close()
    return {"source": source_info, "left_out": left_out, "published": counts,
            "head": {"events": head_seq, "hash": head_hash}, "time": genesis["time"]}


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


def _file_hash(path: Path) -> tuple[str, int]:
    with open(path, "rb") as stream:
        return sha256_file(stream)


def write_snapshot(source: Path, out: Path, *, shown_as: Path | None = None,
                   clobber: bool = True, advance: Callable[[int], Any] = _ignore) -> dict[str, Any]:
    """Build the snapshot of ``source`` under a temporary name beside ``out``, then move it
    into place: replacing ``out`` (``clobber``), or, if another process got there first,
    leaving theirs. Errors name ``shown_as`` (else ``out``)."""
    try:
        with files.temporary(out) as tmp:
            summary = _build(source, tmp, advance)
            summary["sha256"], summary["size"] = _file_hash(tmp)
            advance(1)
            if clobber:
                os.replace(tmp, out)
            else:
                _link_new(tmp, out)
    except (OSError, sqlite3.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StetError(f"cannot write {shown_as or out}: {reason.lower()}") from None
    summary["path"] = str(out)
    return summary


def _link_new(tmp: Path, out: Path) -> None:
    """``tmp`` becomes ``out`` unless ``out`` exists already (then ``tmp`` is left to go)."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not out.exists():
            os.replace(tmp, out)
