# Over 400 lines on purpose: one concern, checking an archive, whose checks share one read
# transaction and one list of problems; splitting them would pass both through every call.
"""Fixity and consistency: every row held to the chain, the schema to its triggers, each event
to its canonical bytes (DESIGN.md, invariants 1, 5 and 8). Every problem is reported.

Like bagit-python's ``validate``, :func:`verify` does not stop at the first problem: it
collects them all, each naming the document (id and SHA-256 prefix), annotation and
revision, layer or event. No value of any type in any column makes it crash: whatever a check
did not expect becomes a problem line.

What the chain records, and what each table is held to:

- ``documents``, ``texts``, ``blobs``: each document has exactly one ``ingest`` event, whose
  details give its SHA-256, size, media type, file name, parent, supersedes, title, source,
  restriction (as ingested; in a public snapshot the row holds the current state, from the
  latest :data:`stet.store.STATE_ACTIONS` event, and nothing may be restricted), its text's
  SHA-256 and extractor; the event's actor and time are ``ingested_by`` and ``ingested_at``.
  The raw bytes are hashed again, chunk by chunk; the text is hashed and measured again.
- ``annotation_revisions``: each ``annotate``, ``revise`` or ``retract`` event records one
  revision (:func:`stet.annotations.event_details`, with the hash of all of it); each
  ``import`` event the rows it inserted (``rows``: ids first to last, their count and
  :func:`stet.annotations.rows_digest`). Every revision is recorded by exactly one of them
  (a public snapshot carries its imports' events with the digest of the rows it publishes).
  ``exact`` is the text at ``start:end``; ``annotations`` is the latest revision of each.
- ``layers``: each has exactly one ``layer-add`` event with its id, name, description and
  colour (actor and time: ``created_by``, ``created``).
- ``accounts`` and ``tokens``: each has exactly one ``user-add`` (name) or ``token-create``
  (account, expires) event, whose actor and time are ``created_by`` and ``created``; each
  account or token event names a row that exists (:mod:`stet.accounts`).
- the schema: every table, index, trigger and view stet's migrations create, with the same
  SQL (an append-only trigger dropped or altered is named), no trigger of anyone else's, and
  every migration recorded.

It reads in passes that each stream: the events once in chain order (then once more, only the
annotation events, beside the revisions in id order: the two are written in the same order),
the documents in id order with their blobs and texts (each text read once) beside the
revisions with spans in document order. What stays in memory is a few small values per
document and per layer.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Any, Callable, Iterable, Iterator

import sqlite_utils

from .annotations import REVISION_COLUMNS, event_details, revisions_digest
from .annotations.model import EVENT_ONLY
from .annotations.schema import current_state_mismatches
from .errors import InvalidInput
from .provenance import check_chain, parse_details
from .blobs.check import check_objects_alongside, unreferenced
from .store import STATE_ACTIONS, STATE_ACTIONS_SQL, USER_ACTIONS, migrations

#: Actions whose ``document`` must name a document row.
_DOCUMENT_ACTIONS = frozenset(("ingest", "ingest-duplicate", *STATE_ACTIONS))
#: Actions that record one annotation revision each.
_REVISION_ACTIONS = ("annotate", "revise", "retract")
#: The account events: the table of the row each names, and the key of its id in the details.
_ACCOUNT_ACTIONS = {**{a: ("accounts", "account") for a in USER_ACTIONS},
                    "token-create": ("tokens", "id"), "token-revoke": ("tokens", "id")}
#: What an ingest event's details say of the rows it wrote, in this order.
_INGEST_KEYS = ("sha256", "size", "media_type", "filename", "parent", "supersedes", "title",
                "source", "restricted", "text_sha256", "extractor", "extractor_version")
#: Keys an older archive's ingest events may lack: checked only when present.
_OPTIONAL_KEYS = frozenset(("filename", "supersedes"))
#: Keys that are NULL when absent.
_NULL_WHEN_ABSENT = frozenset(("parent",))
_ABSENT = object()


def verify(conn, *, expect_head: tuple[int, str] | None = None,
           progress: Callable | None = None, notes: list[str] | None = None) -> list[str]:
    """Every problem found, as one line each (an empty list when the archive is sound).

    ``expect_head=(length, hash)``: a chain head kept elsewhere (``stet log --head``); a
    problem unless event ``length`` exists with that hash. ``progress``: given the number of
    checks plus the number of documents, a context manager yielding ``advance(n)``, advanced
    after each check and after each document. ``notes``: a list to which what is worth
    knowing but is no problem is added (objects in the store that nothing refers to)."""
    expect_head = _expected_head(expect_head)
    facts = _Facts()
    advance: Callable[[int], Any] = _ignore  # rebound below when there is a progress bar
    objects = check_objects_alongside(conn)  # the store read while the file is checked
    steps: list[tuple[str, Callable[[], Iterable[str]]]] = [
        ("schema", lambda: check_schema(conn)),
        ("documents", lambda: facts.load_documents(conn)),
        ("event chain", lambda: check_chain(conn, expect_head=expect_head, visit=facts.add)),
        ("events", lambda: facts.problems),
        ("documents", lambda: check_documents(conn, facts, advance)),
        ("annotation revisions", lambda: check_revisions(conn, facts)),
        ("current state", lambda: check_current_state(conn, moves=bool(facts.moves))),
        ("layers", lambda: check_layers(conn, facts)),
        ("accounts", lambda: check_accounts(conn, facts)),
        ("carried annotations", lambda: check_anchoring(conn, facts)),
        ("object store", objects),
    ]
    if notes is not None:
        steps.append(("object store", lambda: _unreferenced(conn, notes)))
    if progress is None:
        return _run(steps, advance)
    with progress(len(steps) + _count(conn, "documents")) as advance:
        return _run(steps, advance)


def _ignore(n: int) -> None:
    return None


def _unreferenced(conn, notes: list[str]) -> Iterator[str]:
    """Notes, not problems: what an interrupted write left in a store (``stet store gc``)."""
    for item in unreferenced(conn):
        notes.append(f"object store: {item['store']}: {item['key']} ({item['size']} bytes) is "
                     "referred to by no document (left by an interrupted write: stet store gc)")
    return iter(())


def _count(conn, table: str) -> int:
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except Exception:  # a damaged schema: the checks report it
        return 0


def _run(steps, advance: Callable[[int], Any]) -> list[str]:
    problems: list[str] = []
    for name, step in steps:
        problems.extend(_guarded(name, step))
        advance(1)
    return problems


def _guarded(name: str, step: Callable[[], Iterable[str]]) -> Iterator[str]:
    """The step's problems; an exception it did not expect ends it with one more problem."""
    try:
        yield from step()
    except Exception as exc:  # a damaged archive: report, never a traceback
        yield f"verify: the {name} check stopped: {type(exc).__name__}: {exc}"


def _expected_head(expect_head) -> tuple[int, str] | None:
    if expect_head is None:
        return None
    try:
        length, head = expect_head
    except (TypeError, ValueError):
        raise InvalidInput("expect_head is (length, hash)") from None
    head = str(head).lower()
    if (not isinstance(length, int) or isinstance(length, bool) or length < 0
            or len(head) != 64 or any(c not in "0123456789abcdef" for c in head)):
        raise InvalidInput(f"expected head {length}:{head}: give LENGTH:HASH, a chain length "
                           "and the SHA-256 (64 hex digits) of its head")
    return length, head


def _doc(doc_id, sha) -> str:
    return f"document {doc_id} (sha256 {str(sha)[:12]})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- what the chain records ---------------------------------------------------------------


class _Facts:
    """What the events say about documents, layers and imports, gathered while the chain is
    streamed (small values per document and layer; nothing per annotation)."""

    def __init__(self) -> None:
        self.snapshot = False  # a public snapshot: its event 1 is its publish event
        self.documents: set[int] = set()
        self.layers: dict[Any, list[tuple]] = {}  # layer id -> [(seq, subject, actor, time, details)]
        self.layer_actions: dict[int, str] = {}  # seq -> the action that created a layer
        self.moves: list[tuple[int, str, Any, Any]] = []  # (seq, action, from, into)
        # (first, last, seq, count, sha, action) of each import's and reanchor's revision rows
        self.imports: list[tuple[int, int, int, Any, Any, str]] = []
        self.anchorings: dict[int, Any] = {}  # reanchor seq -> its details' "anchoring"
        self.revision_events = 0
        # account or token id -> [(seq, actor, time, details)] of its user-add / token-create
        self.created: dict[str, dict[Any, list[tuple]]] = {"accounts": {}, "tokens": {}}
        self.changes: list[tuple[int, str, str, Any]] = []  # (seq, action, table, id)
        self.problems: list[str] = []

    @staticmethod
    def document_events(conn, document: int) -> tuple[list[tuple], tuple | None]:
        """A document's ``ingest`` events, each as ``(seq, actor, time, subject, values)``
        (``values``: what its details record, in :data:`_INGEST_KEYS` order), and the latest
        of its state events as ``(seq, action, title, source, restricted)``: read when the
        document is checked, through the index, so that nothing per document is held for the
        whole run (memory stays flat at any size). Events whose details do not parse as an
        object are left out: the chain's check reports them."""
        ingests: list[tuple] = []
        state = None
        for seq, actor, time, action, subject, text in conn.execute(
                "SELECT seq, actor, time, action, subject, details FROM events "
                "WHERE document = ? "
                f"AND action IN {STATE_ACTIONS_SQL} ORDER BY seq", (document,)):
            details, _ = parse_details(text)
            if not isinstance(details, dict):
                continue
            if action == "ingest":
                values = tuple(details.get(k, None if k in _NULL_WHEN_ABSENT else _ABSENT)
                               for k in _INGEST_KEYS)
                ingests.append((seq, actor, time, subject, values))
            if action in STATE_ACTIONS:
                state = (seq, action, details.get("title", _ABSENT), details.get("source", _ABSENT),
                         details.get("restricted", _ABSENT))
        return ingests, state

    def load_documents(self, conn) -> Iterator[str]:
        self.documents = {row[0] for row in conn.execute("SELECT id FROM documents")}
        return iter(())

    def add(self, event: dict[str, Any]) -> None:
        seq, action, document, details = (event["seq"], event["action"], event["document"],
                                          event["details"])
        if seq == 1 and action == "publish":
            self.snapshot = True
        if action in _REVISION_ACTIONS:
            self.revision_events += 1
            return
        if action in _DOCUMENT_ACTIONS:
            if document not in self.documents:
                self.problems.append(f"event {seq} ({action}): document {document} does not exist")
                return
            if not isinstance(details, dict):
                self.problems.append(f"event {seq} ({action}): details are not a JSON object")
                return
        elif action in ("layer-add", "layer-rename", "layer-merge"):
            if not isinstance(details, dict):
                self.problems.append(f"event {seq} ({action}): details are not a JSON object")
                return
            if action != "layer-merge":  # a rename creates the layer row of the new name
                self.layers.setdefault(details.get("id"), []).append(
                    (seq, event["subject"], event["actor"], event["time"], details))
                self.layer_actions[seq] = action
            if action != "layer-add":
                self.moves.append((seq, action, details.get("from"), details.get("into")))
        elif action in _ACCOUNT_ACTIONS:
            if not isinstance(details, dict):
                self.problems.append(f"event {seq} ({action}): details are not a JSON object")
                return
            table, key = _ACCOUNT_ACTIONS[action]
            if action in ("user-add", "token-create"):
                self.created[table].setdefault(details.get(key), []).append(
                    (seq, event["actor"], event["time"], details))
            else:
                self.changes.append((seq, action, table, details.get(key)))
        elif action in ("import", "reanchor"):
            rows = details.get("rows") if isinstance(details, dict) else None
            if action == "reanchor" or (isinstance(details, dict) and "anchoring" in details):
                # in a snapshot, anchoring rows name the archive's event
                original = details.get("original") if isinstance(details, dict) else None
                named = original.get("seq") if self.snapshot and isinstance(original, dict) \
                    else seq
                self.anchorings[seq] = (details.get("anchoring") if isinstance(details, dict)
                                        else None, named)
            if rows is None:
                return
            first, last, count, sha = (rows.get(k) for k in ("first", "last", "count", "sha256")) \
                if isinstance(rows, dict) else (None,) * 4
            if not (type(first) is int and type(last) is int and first <= last):
                self.problems.append(f"event {seq} ({action}): rows {_show(rows)} name no range "
                                     "of revision ids")
                return
            self.imports.append((first, last, seq, count, sha, action))


# -- the schema -----------------------------------------------------------------------------


def expected_schema() -> tuple[dict[tuple[str, str], tuple[str, str]], set[tuple[str, str]]]:
    """What stet's migrations create, from a fresh in-memory archive: ``{(type, name):
    (tbl_name, sql)}``, and the ``(migration_set, name)`` rows of ``_sqlite_migrations``."""
    fresh = sqlite_utils.Database(memory=True)
    try:
        migrations.apply(fresh)
        schema = {(t, n): (tbl, sql) for t, n, tbl, sql in fresh.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master")}
        applied = set(fresh.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall())
    finally:
        fresh.conn.close()
    return schema, applied


def check_schema(conn) -> Iterator[str]:
    """Every table, index, trigger and view of stet's schema, with its SQL; no other trigger;
    every migration recorded. Other tables (a snapshot's full-text indexes) are allowed."""
    expected, applied = expected_schema()
    actual = {(t, n): (tbl, sql) for t, n, tbl, sql in conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master")}
    for (kind, name), value in sorted(expected.items()):
        if (kind, name) not in actual:
            yield f"schema: {kind} {name} is missing"
        elif actual[(kind, name)] != value and name != "_sqlite_migrations":
            # (the migrations table's own SQL is sqlite-utils', which may differ by version)
            yield f"schema: {kind} {name} differs from stet's"
    for kind, name in sorted(set(actual) - set(expected)):
        if kind == "trigger":
            yield f"schema: trigger {name} is not part of stet's schema"
    if ("table", "_sqlite_migrations") in actual:
        recorded = set(conn.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall())
        for migration_set, name in sorted(applied - recorded):
            yield f"schema: migration {migration_set} {name} is not recorded in _sqlite_migrations"


# -- documents, raw bytes, texts, spans ------------------------------------------------------

_DOCUMENTS = (
    "SELECT d.id, d.sha256, d.size, d.media_type, d.filename, d.parent, d.supersedes, d.title, "
    "d.source, d.restricted, d.ingested_by, d.ingested_at, "
    "b.sha256, b.size, b.chunk_count, b.storage, "
    "t.document, t.sha256, t.length, t.extractor, t.extractor_version, typeof(t.text), "
    "CAST(t.text AS BLOB), {placed} "
    "FROM documents d LEFT JOIN blobs b ON b.sha256 = d.sha256 "
    "LEFT JOIN texts t ON t.document = d.id ORDER BY d.id"
)
#: The revisions with a span, in document order (the (document, modified_us) index: no sort).
_SPANS = ('SELECT document, annotation, revision, start, "end", exact FROM annotation_revisions '
          "INDEXED BY annotation_revisions_document_time WHERE start IS NOT NULL "
          "ORDER BY document, modified_us")


def check_documents(conn, facts: _Facts,
                    advance: Callable[[int], Any] = _ignore) -> Iterator[str]:
    """Each document against its ingest event (and, in a snapshot, its current state), its
    raw bytes against their SHA-256, its text against its SHA-256 and length, and every span
    on it against the text: one document (and one text) in memory at a time."""
    spans = _Spans(conn.execute(_SPANS))
    objects = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'blob_objects'").fetchone()
    placed = "EXISTS (SELECT 1 FROM blob_objects o WHERE o.sha256 = d.sha256)" if objects else "0"
    for row in conn.execute(_DOCUMENTS.format(placed=placed)):
        doc_id = row[0]
        name = _doc(doc_id, row[1])
        try:
            text_bytes = row[22]
            yield from _check_ingest(conn, name, row, facts)
            yield from _check_blob(conn, name, row, text_bytes)
            text = yield from _check_text(name, row, text_bytes)
        except Exception as exc:
            yield f"{name}: could not be checked ({type(exc).__name__}: {exc})"
            text = None
        yield from spans.check(doc_id, text, name)
        advance(1)
    yield from spans.rest()
    for (doc_id,) in conn.execute(
            "SELECT document FROM texts WHERE document NOT IN (SELECT id FROM documents)"):
        yield f"texts: a text for document {doc_id}, which does not exist"


def _check_ingest(conn, name: str, row: tuple, facts: _Facts) -> Iterator[str]:
    doc_id = row[0]
    events, current = facts.document_events(conn, doc_id)
    if not events:
        yield f"{name}: no ingest event records it"
        return
    if len(events) > 1:
        yield f"{name}: {len(events)} ingest events record it (events {', '.join(str(e[0]) for e in events)})"
    seq, actor, time, subject, values = events[0]
    recorded = dict(zip(_INGEST_KEYS, values))
    where = f"its ingest event (event {seq})"
    lacking = [k for k, v in recorded.items() if v is _ABSENT and k not in _OPTIONAL_KEYS]
    if lacking:
        yield f"{name}: {where} records no {', '.join(lacking)}"
    if subject != f"document:{doc_id}":
        yield f"{name}: {where} names {_show(subject)}"
    stored = {"sha256": row[1], "size": row[2], "media_type": row[3], "filename": row[4],
              "parent": row[5], "supersedes": row[6]}
    for key, value in stored.items():
        expected = recorded[key]
        if expected is _ABSENT:
            continue
        if (facts.snapshot and key == "supersedes" and value is None
                and expected not in facts.documents):
            continue  # a snapshot leaves out a superseded document that is withheld
        if not _same(value, expected):
            yield f"{name}: documents.{key} is {_show(value)}, {where} records {_recorded(expected)}"
    for column, value in (("ingested_by", row[10]), ("ingested_at", row[11])):
        expected = actor if column == "ingested_by" else time
        if value != expected or type(value) is not type(expected):
            yield f"{name}: documents.{column} is {_show(value)}, {where} records {_show(expected)}"
    state = {"title": row[7], "source": row[8], "restricted": row[9]}
    if facts.snapshot:
        if row[9] != 0:
            yield f"{name}: documents.restricted is {_show(row[9])} in a public snapshot"
        if current is None:
            yield f"{name}: no ingest, restrict, unrestrict or edit event gives its state"
            return
        cseq, action, title, source, restricted = current
        if restricted is not False:
            yield (f"{name}: restricted by event {cseq} ({action}), yet in a public snapshot")
        where = f"its current state (event {cseq}, {action})"
        for key, expected in (("title", title), ("source", source)):
            if not _same(state[key], expected):
                yield f"{name}: documents.{key} is {_show(state[key])}, {where} records {_recorded(expected)}"
    else:
        for key, value in state.items():
            if recorded[key] is not _ABSENT and not _same(value, recorded[key]):
                yield f"{name}: documents.{key} is {_show(value)}, {where} records {_recorded(recorded[key])}"
    has_text = row[16] is not None
    if has_text:
        for column, value, key in (("sha256", row[17], "text_sha256"), ("extractor", row[19], "extractor"),
                                   ("extractor_version", row[20], "extractor_version")):
            if recorded[key] is not _ABSENT and not _same(value, recorded[key]):
                yield (f"{name}: texts.{column} is {_show(value)}, "
                       f"{where} records {key} {_recorded(recorded[key])}")


def _same(value: Any, expected: Any) -> bool:
    """A column's value against what an event's JSON records (a bool is stored as 0 or 1)."""
    if isinstance(expected, bool):
        return type(value) is int and value == int(expected)
    if expected is _ABSENT:
        return False
    return value == expected and type(value) is type(expected)


def _recorded(expected: Any) -> str:
    return "nothing" if expected is _ABSENT else _show(expected)


def _check_blob(conn, name: str, row: tuple, text_bytes: Any) -> Iterator[str]:
    """The raw bytes, chunk by chunk (or, kept as the text, the text's bytes), against the
    document's SHA-256 and size."""
    sha, doc_size, blob_sha, blob_size, chunk_count, storage = row[1], row[2], *row[12:16]
    if blob_sha is None:
        yield f"{name}: raw bytes missing"
        return
    if storage == "text":
        if row[16] is None:
            yield f"{name}: raw bytes (kept as its text) missing"
            return
        data = text_bytes if isinstance(text_bytes, bytes) else b""
        if len(data) != blob_size or len(data) != doc_size:
            yield from _sizes(name, len(data), doc_size, blob_size)
        elif hashlib.sha256(data).hexdigest() != sha:
            yield f"{name}: raw bytes do not match their SHA-256 (kept as its text, which was changed)"
        return
    if storage != "chunks":
        yield f"{name}: raw bytes stored as {_show(storage)}, neither 'chunks' nor 'text'"
        return
    if row[23]:  # in an object store: checked there (stet.blobs.check), each object once
        return
    digest = hashlib.sha256()
    size = 0
    expected_seq = 0
    gap = False
    for seq, data, kind in conn.execute(
        "SELECT seq, data, typeof(data) FROM blob_chunks WHERE sha256 = ? ORDER BY seq", (sha,)
    ):
        if seq != expected_seq:
            gap = True
        if kind != "blob":
            yield f"{name}: raw bytes chunk {_show(seq)} is stored as {kind}, not as a BLOB"
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        elif not isinstance(data, bytes):
            data = str(data).encode()
        expected_seq = seq + 1 if isinstance(seq, int) else expected_seq + 1
        digest.update(data)
        size += len(data)
    if gap or expected_seq != chunk_count:
        yield f"{name}: raw bytes incomplete ({expected_seq} of {_show(chunk_count)} chunks, or out of order)"
    yield from _sizes(name, size, doc_size, blob_size)
    if digest.hexdigest() != sha:
        yield f"{name}: raw bytes do not match their SHA-256 (got {digest.hexdigest()[:12]})"


def _sizes(name: str, size: int, doc_size: Any, blob_size: Any) -> Iterator[str]:
    if size != doc_size:
        yield f"{name}: raw bytes are {size} bytes, documents.size records {_show(doc_size)}"
    elif size != blob_size:
        yield f"{name}: raw bytes are {size} bytes, blobs.size records {_show(blob_size)}"


def _check_text(name: str, row: tuple, data: Any):
    """The text against its SHA-256 and length; returns it (``None`` if unusable)."""
    has_text, text_sha, length, kind = row[16], row[17], row[18], row[21]
    if has_text is None:
        yield f"{name}: extracted text missing"
        return None
    if kind != "text":
        yield f"{name}: extracted text is stored as {kind}, not as text"
    if not isinstance(data, bytes):
        return None
    if hashlib.sha256(data).hexdigest() != text_sha:
        yield f"{name}: text does not match its SHA-256"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield f"{name}: text is not valid UTF-8"
        return None
    if len(text) != length:
        yield f"{name}: text is {len(text)} code points, recorded {_show(length)}"
    return text


class _Spans:
    """The revisions with a span, in document order, consumed beside the documents."""

    def __init__(self, cursor) -> None:
        self.rows = iter(cursor)
        self.next = next(self.rows, None)

    def check(self, doc_id: int, text: str | None, name: str) -> Iterator[str]:
        """``0 <= start < end <= length`` and ``exact == text[start:end]`` for each revision
        on this document (after reporting those on documents before it, which do not exist)."""
        while self.next is not None and _before(self.next[0], doc_id):
            yield from self._orphan(self.next)
            self.next = next(self.rows, None)
        while self.next is not None and self.next[0] == doc_id:
            _, ann, rev, start, end, exact = self.next
            where = f"annotation {ann} revision {rev}"
            try:
                if text is None:
                    yield f"{where}: {name} has no usable text"
                elif not (type(start) is int and type(end) is int and 0 <= start < end <= len(text)):
                    yield f"{where}: span {_show(start)}:{_show(end)} outside document {doc_id}'s text"
                elif text[start:end] != exact:
                    yield f"{where}: exact is not the text at {start}:{end} of document {doc_id}"
            except Exception as exc:
                yield f"{where}: could not be checked ({type(exc).__name__}: {exc})"
            self.next = next(self.rows, None)

    def rest(self) -> Iterator[str]:
        while self.next is not None:
            yield from self._orphan(self.next)
            self.next = next(self.rows, None)

    @staticmethod
    def _orphan(row: tuple) -> Iterator[str]:
        yield f"annotation {row[1]} revision {row[2]}: document {_show(row[0])} does not exist"


def _before(a: Any, b: int) -> bool:
    """SQLite's order of a document value against a document id (integers first, then the rest)."""
    if a is None:
        return True
    return a < b if isinstance(a, (int, float)) else False


# -- annotation revisions against their events ---------------------------------------------

_REVISIONS = "SELECT id, " + ", ".join(f'"{c}"' for c in REVISION_COLUMNS) + " FROM annotation_revisions"
_REVISION_EVENTS = ("SELECT seq, time, actor, action, subject, document, details FROM events "
                    "WHERE action IN ('annotate', 'revise', 'retract') ORDER BY seq")


def check_revisions(conn, facts: _Facts) -> Iterator[str]:
    """Every revision recorded by exactly one event: its own annotate, revise or retract
    event (which must match it, hash of all of it included), or the ``rows`` of an import;
    every such event finds its revision; each import's rows hash to what it recorded.

    Each row is read once: those in an import's range by
    :func:`stet.annotations.revisions_digest`, the others here. Revisions and their events
    are written in the same order (a revision, then its event, in one transaction; a
    snapshot copies both in order), so those rows in id order and the events in chain order
    are walked side by side; only a mismatch is looked up by key."""
    ranges = sorted(facts.imports)
    for (first, last, seq, _count, _sha, _action), following in zip(ranges, ranges[1:]):
        if following[0] <= last:
            yield (f"event {following[2]} ({following[5]}): its rows {following[0]}-{following[1]} "
                   f"overlap those of event {seq} ({first}-{last})")
    for first, last, seq, count, sha, action in ranges:
        found, digest = revisions_digest(conn, first, last)
        # in a snapshot, the rows of withheld documents leave gaps in a range
        if found != count or digest != sha or (count != last - first + 1 and not facts.snapshot):
            yield (f"event {seq} ({action}): revisions {first}-{last} are not the rows it recorded "
                   f"({_show(count)} rows, sha256 {str(sha)[:12]}; found {found}, {digest[:12]})")

    def importer(row_id: int | None) -> int | None:
        """The import event whose rows include this id, if any."""
        if row_id is None:
            return None
        i = bisect.bisect_right(firsts, row_id) - 1
        return ranges[i][2] if i >= 0 and row_id <= ranges[i][1] else None

    firsts = [r[0] for r in ranges]
    events = _revision_events(conn)
    current = next(events, None)
    located: Any = False  # the id of current's revision, None if absent (False: not looked up)
    for row in _unimported_rows(conn, ranges):
        row_id, revision = row[0], dict(zip(REVISION_COLUMNS, row[1:]))
        key = (revision["annotation"], revision["revision"])
        where = f"annotation {key[0]} revision {key[1]}"
        try:
            while current is not None and current[0] != key:
                if located is False:
                    located = _locate(conn, current[0])
                if located is not None and importer(located) is None and located > row_id:
                    break  # its revision lies ahead: this one is not recorded by it
                yield from _missing(current, located, importer(located))
                current, located = next(events, None), False
            if current is not None and current[0] == key:
                yield from _compare(where, revision, current)
                current, located = next(events, None), False
            else:
                yield (f"{where}: no event records it (no annotate, revise or retract event, "
                       "and no import's or reanchor's rows)")
        except Exception as exc:
            yield f"{where}: could not be checked ({type(exc).__name__}: {exc})"
    while current is not None:
        located = _locate(conn, current[0]) if located is False else located
        yield from _missing(current, located, importer(located))
        current, located = next(events, None), False


def _unimported_rows(conn, ranges: list[tuple]) -> Iterator[tuple]:
    """The revision rows outside every import's range, in id order."""
    lower = None
    for first, last, *_ in [*ranges, (None, None)]:
        clauses = [c for c, v in (("id > ?", lower), ("id < ?", first)) if v is not None]
        params = [v for v in (lower, first) if v is not None]
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        yield from conn.execute(f"{_REVISIONS}{where} ORDER BY id", params)
        if last is not None:
            lower = last if lower is None else max(lower, last)


def _revision_events(conn) -> Iterator[tuple]:
    """``((annotation, revision), seq, action, actor, time, document, details)`` of each
    annotate, revise and retract event, in chain order (details as parsed)."""
    for seq, time, actor, action, subject, document, text in conn.execute(_REVISION_EVENTS):
        try:
            details, _ = parse_details(text)  # not canonical: reported by the chain check
            annotation = int(subject.removeprefix("annotation:")) \
                if isinstance(subject, str) and subject.startswith("annotation:") else None
            revision = details.get("revision") if isinstance(details, dict) else None
        except (ValueError, TypeError):
            continue  # reported by the chain check
        yield ((annotation, revision), seq, action, actor, time, document, details)


def _locate(conn, key: tuple) -> int | None:
    if not all(type(k) is int for k in key):
        return None
    row = conn.execute("SELECT id FROM annotation_revisions WHERE annotation = ? AND revision = ?",
                       key).fetchone()
    return row[0] if row else None


def _missing(event: tuple, located: int | None, importer: int | None) -> Iterator[str]:
    (annotation, revision), seq, action = event[:3]
    if importer is not None:
        yield (f"annotation {annotation} revision {revision}: recorded twice, by event {seq} "
               f"({action}) and by the rows of import event {importer}")
    elif located is None:
        yield f"event {seq} ({action}): annotation {annotation} revision {revision} does not exist"
    else:
        yield (f"event {seq} ({action}): annotation {annotation} revision {revision} is "
               "recorded by another event too, or out of order")


def _compare(where: str, revision: dict[str, Any], event: tuple) -> Iterator[str]:
    _, seq, action, actor, time, document, details = event
    expected = event_details(revision)
    recorded = {k: v for k, v in details.items() if k not in EVENT_ONLY} \
        if isinstance(details, dict) else details
    if recorded != expected:
        differ = sorted(k for k in set(expected) | set(recorded or {})
                        if not isinstance(recorded, dict)
                        or recorded.get(k, _ABSENT) != expected.get(k, _ABSENT))
        yield (f"{where}: does not match event {seq} ({action}): {', '.join(differ)} differ"
               + (" (the revision was changed)" if "revision_sha256" in differ else ""))
    if actor != revision["author"]:
        yield (f"{where}: author is {_show(revision['author'])}, "
               f"event {seq} ({action}) records {_show(actor)}")
    if time != revision["modified"]:
        yield (f"{where}: modified is {_show(revision['modified'])}, "
               f"event {seq} ({action}) records {_show(time)}")
    if document != revision["document"]:
        yield (f"{where}: document is {_show(revision['document'])}, "
               f"event {seq} ({action}) records {_show(document)}")


# -- the current state ----------------------------------------------------------------------


def check_current_state(conn, *, moves: bool = False) -> Iterator[str]:
    """The derived ``annotations`` table agrees with the latest revision of each annotation
    (its layer followed through the chain's renames and merges, when it has ``moves``)."""
    rows = conn.execute(current_state_mismatches(moves)).fetchall()
    for row in rows:
        yield f"annotation {row[0]}: current state does not match its latest revision"
    extra = conn.execute(
        "SELECT id FROM annotations WHERE id NOT IN (SELECT annotation FROM annotation_revisions)"
    ).fetchall()
    for (ann,) in extra:
        yield f"annotation {ann}: in the current state but has no revision"


# -- layers ---------------------------------------------------------------------------------


def _recorded_once(where: str, events: list[tuple], action: str):
    """The problems of a row that ``action`` events (``(seq, ...)``, in chain order) should
    record exactly once; returns the first of them, or None when there is none."""
    if not events:
        yield f"{where}: no {action} event records it"
        return None
    if len(events) > 1:
        listed = ", ".join(str(e[0]) for e in events)
        yield f"{where}: {len(events)} {action} events record it (events {listed})"
    return events[0]


def check_layers(conn, facts: _Facts) -> Iterator[str]:
    """Each layer against the one event that created it (``layer-add``, or the
    ``layer-rename`` that gave a layer its new name); each such event finds its layer; each
    rename and merge moves a layer that existed and was still open into one that was."""
    seen = set()
    for layer_id, name, description, colour, created_by, created in conn.execute(
        "SELECT id, name, description, colour, created_by, created FROM layers ORDER BY id"
    ):
        seen.add(layer_id)
        where = f"layer {layer_id} ({_show(name)})"
        first = yield from _recorded_once(where, facts.layers.get(layer_id, []), "layer-add")
        if first is None:
            continue
        seq, subject, actor, time, details = first
        action = facts.layer_actions.get(seq, "layer-add")
        for column, value, expected in (
            ("name", name, details.get("name", _ABSENT)),
            ("description", description, details.get("description", _ABSENT)),
            ("colour", colour, details.get("colour", _ABSENT)),
            ("created_by", created_by, actor),
            ("created", created, time),
        ):
            if not _same(value, expected):
                yield (f"{where}: {column} is {_show(value)}, "
                       f"event {seq} ({action}) records {_recorded(expected)}")
        if subject != f"layer:{name}":
            yield f"{where}: event {seq} ({action}) names {_show(subject)}"
    for layer_id, events in facts.layers.items():
        if layer_id not in seen:
            for event in events:
                action = facts.layer_actions.get(event[0], "layer-add")
                yield f"event {event[0]} ({action}): layer {_show(layer_id)} does not exist"
    yield from _check_moves(facts, seen)


def _check_moves(facts: _Facts, layers: set) -> Iterator[str]:
    """Renames and merges, in chain order: each from a layer that exists and has not moved
    yet, into another that exists and has not moved (a rename: into the layer it created).
    A published snapshot leaves out layers used only on withheld documents: there a rename
    may come from no layer (``from`` null)."""
    closed: dict[Any, int] = {}  # layer -> the event that moved it away
    for seq, action, source, into in facts.moves:
        where = f"event {seq} ({action})"
        if source is None and action == "layer-rename" and facts.snapshot:
            continue
        for role, layer in (("from", source), ("into", into)):
            if layer not in layers:
                yield f"{where}: {role} layer {_show(layer)} does not exist"
            elif layer in closed:
                yield (f"{where}: {role} layer {_show(layer)} was already renamed or merged "
                       f"(event {closed[layer]})")
        if source == into:
            yield f"{where}: moves layer {_show(source)} into itself"
        if action == "layer-rename":
            created = [e[0] for e in facts.layers.get(into, [])]
            if seq not in created:
                yield f"{where}: renames into layer {_show(into)}, which it did not create"
        closed.setdefault(source, seq)


# -- carried annotations --------------------------------------------------------------------


def check_anchoring(conn, facts: _Facts) -> Iterator[str]:
    """Every row of ``annotation_anchoring`` (how an annotation carried to a newer version
    was placed) recorded by the ``anchoring`` of exactly one reanchor event (or of the import
    that brought a carried annotation from another archive), whose range
    and SHA-256 it must match; each row names that event; no event's range overlaps
    another's (:mod:`stet.annotations.versions`)."""
    from .annotations.versions import anchoring_digest

    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'annotation_anchoring'").fetchone() \
            is None:
        return  # reported by the schema check
    ranges = []
    for seq, (recorded, named) in sorted(facts.anchorings.items()):
        first, last, count, sha = (recorded.get(k) for k in ("first", "last", "count", "sha256")) \
            if isinstance(recorded, dict) else (None,) * 4
        if not (type(first) is int and type(last) is int and first <= last):
            yield f"event {seq} (reanchor): anchoring {_show(recorded)} names no range of rows"
            continue
        found, digest = anchoring_digest(conn, first, last)
        if found != count or digest != sha or (count != last - first + 1 and not facts.snapshot):
            yield (f"event {seq} (reanchor): anchoring rows {first}-{last} are not the rows it "
                   f"recorded ({_show(count)} rows, sha256 {str(sha)[:12]}; found {found}, "
                   f"{digest[:12]})")
        wrong = conn.execute("SELECT id, event FROM annotation_anchoring WHERE id BETWEEN ? AND ? "
                             "AND event IS NOT ? ORDER BY id LIMIT 1", (first, last, named)).fetchone()
        if wrong:
            yield (f"anchoring row {wrong[0]}: names event {wrong[1]}, recorded by event {seq}"
                   + (f" (event {named} of the archive)" if named != seq else ""))
        ranges.append((first, last, seq))
    for (first, last, seq), following in zip(ranges, ranges[1:]):
        if following[0] <= last:
            yield (f"event {following[2]} (reanchor): its anchoring rows {following[0]}-"
                   f"{following[1]} overlap those of event {seq} ({first}-{last})")
    lower = 0
    for first, last, _seq in [*ranges, (None, None, None)]:
        row = conn.execute(
            "SELECT id FROM annotation_anchoring WHERE id > ?" + (" AND id < ?" if first else "")
            + " ORDER BY id LIMIT 1", (lower, first) if first else (lower,)).fetchone()
        if row:
            yield f"anchoring row {row[0]}: no reanchor or import event records it"
        if last is not None:
            lower = max(lower, last)


# -- accounts -------------------------------------------------------------------------------


def check_accounts(conn, facts: _Facts) -> Iterator[str]:
    """Each account against its ``user-add`` event (name, created, created_by), each token
    against its ``token-create`` event (account, expires, created, created_by); each account
    or token event names a row that exists. Hashes are checked by nothing but a login."""
    tables = (  # table, its creating event, the columns its event's details record
        ("accounts", "user-add", ("name",)),
        ("tokens", "token-create", ("account", "expires")),
    )
    for table, creating, keys in tables:
        created = facts.created[table]
        seen = set()
        for row in conn.execute(f"SELECT id, created, created_by, {', '.join(keys)} "
                                f"FROM {table} ORDER BY id"):
            row_id, time, by, values = row[0], row[1], row[2], row[3:]
            seen.add(row_id)
            where = f"{table[:-1]} {row_id}" + (f" ({_show(row[3])})" if table == "accounts" else "")
            first = yield from _recorded_once(where, created.get(row_id, []), creating)
            if first is None:
                continue
            seq, actor, when, details = first
            for column, value, expected in (
                *zip(keys, values, (details.get(k, _ABSENT) for k in keys)),
                ("created_by", by, actor), ("created", time, when),
            ):
                if not _same(value, expected):
                    yield (f"{where}: {column} is {_show(value)}, "
                           f"event {seq} ({creating}) records {_recorded(expected)}")
        for row_id, events in created.items():
            if row_id not in seen:
                for event in events:
                    yield f"event {event[0]} ({creating}): {table[:-1]} {_show(row_id)} does not exist"
        for seq, action, changed, row_id in facts.changes:
            if changed == table and row_id not in seen:
                yield f"event {seq} ({action}): {table[:-1]} {_show(row_id)} does not exist"
