# Over 400 lines on purpose: a sixth of it is the docstring (why the file is private, when it
# is rebuilt, why deletes work as they do), and the refresh and the queries that must agree
# with what it indexed are kept in one place.
"""The workbench's private full-text index: staff search over the LIVE archive, restricted
documents included.

What: :class:`StaffSearch` keeps one SQLite file with the two full-text indexes a public
snapshot has (:mod:`stet.publish`): ``documents_fts`` over each document's current title and
its text, and ``annotations_fts`` over each current, active annotation's body, quote and tags,
folded by :func:`stet.publish.fold` and tokenized by :data:`stet.publish.TOKENIZER`; and it
answers a query exactly as the public search page does (:func:`stet.datasette_plugin.views.fts_query`,
counts capped at ``COUNT_CAP + 1``), but over everything, each result saying whether it is
restricted now.

Where: ``<archive>-workbench/search.db`` beside the archive (``archive.db-workbench/search.db``),
unless another path is given; the folder is created ``0700`` and the file is kept ``0600``
(SQLite gives its journal the file's mode).

Why private: the live archive has no full-text index (only public snapshots carry one, and they
hold nothing restricted), and staff must find restricted material too. So this file holds
restricted text: it is never published, never served as a database, and readable only by the
account the workbench runs as.

Derived data: every row is computed from the archive, which is only ever read; delete the file
any time, even while the workbench runs (the next call sees the file gone, or replaced, and
builds it again). It is rebuilt from scratch when it is missing, unreadable or corrupt, when it
was made from another archive (the first event's hash differs), when the archive does not
continue what was indexed (the event last indexed now has another hash, or the archive has
fewer documents, revisions or events than were indexed), and when it was made by another
index :data:`FORMAT`, another fold or tokenizer, or another SQLite version (whose ``unicode61``
tables may tokenize differently).

Incremental: the archive's tables are append-only but ``annotations`` (the current state, kept
by triggers from ``annotation_revisions``). The ``state`` table records how far the index has
read: the largest document id, ``annotation_revisions`` id and events ``seq``. A refresh indexes
the documents after that id; re-indexes the title of each older document with a new state event
(:data:`stet.store.STATE_ACTIONS`: an ``edit`` changes the current title; a restriction changes
nothing indexed, and is skipped once the title is seen to be the same); and re-indexes the
current state of each annotation with a new revision, removing it when it is retracted. All of
it in one read transaction of the archive and one write transaction of the index, rows streamed
and written in batches, so memory stays flat whatever the archive's size.

Restriction, titles, layer names and everything a result shows are never stored here: they are
read from the archive when a search answers, in the same read transaction as the refresh before
it, so a restriction (of the document, or of any ancestor: an attachment of a restricted message
is restricted) counts from the moment it is committed.

The archive is opened per call with ``stet.store.connect(path, mode="read")``: ``query_only``,
no migration, and no ``-wal`` or ``-shm`` left beside a quiescent archive (an ``ATTACH ...
mode=ro`` on the index's connection would leave both). Holding it only for the call also lets
the workbench's own connection be the last to close.

FTS5 deletes: this machine's SQLite is 3.40 (``sqlite3.sqlite_version``), and a contentless
table can only drop a row by rowid with ``contentless_delete=1``, which came in 3.43. Every
FTS5 version has the ``'delete'`` command, which removes a row of a contentless table given
exactly the values that were inserted. ``documents_fts`` is contentless (``content=''``), as in
a snapshot, so the index keeps no second copy of every text (by far the bulk of the archive); a
document is only re-indexed when its title changes, and the ``'delete'`` is then given the
folded title the index kept (``document_titles``) and the text read again from the archive
(``texts`` is append-only: it is the text that was indexed), folded by the same fold: the fold,
the tokenizer and the SQLite version are recorded, and a change of any of them rebuilds the
index, so a ``'delete'`` always tokenizes exactly as its insert did. ``annotations_fts`` is a
regular FTS5 table (it keeps its folded content): annotations are short and change with every
revision, and a regular table deletes a row by rowid alone, from what it stored itself.

Threads: :meth:`StaffSearch.refresh` and :meth:`StaffSearch.search` may be called from several
threads (``asyncio.to_thread``); one lock serializes them. One process per index file: another
process's rebuild replaces the file, which this one notices, but two writers are not coordinated
beyond SQLite's own locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .. import store
from ..datasette_plugin import highlight
from ..datasette_plugin.views import COUNT_CAP, PUBLIC, fts_query
from ..errors import InvalidInput, NotFound, StetError
from ..publish import FOLDED, TOKENIZER, fold

#: Bumped whenever what the index holds, or how, changes: an index of another format is
#: rebuilt.
FORMAT = 1

#: What decides the tokens of a text besides the text: an index made with another of these is
#: rebuilt (a contentless ``'delete'`` must tokenize exactly as its insert did).
FOLD_KEY = hashlib.sha256(f"{TOKENIZER}\n{FOLDED}".encode()).hexdigest()

#: Rows written per ``executemany``, and the characters of text read before they are written.
BATCH_ROWS = 500
BATCH_CHARS = 8_000_000

FOLDER_MODE = 0o700
FILE_MODE = 0o600

_SCHEMA = (
    "CREATE TABLE state (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    # the folded title each document was indexed with, and whether its text was: what a
    # contentless 'delete' must be given again
    "CREATE TABLE document_titles (id INTEGER PRIMARY KEY, title TEXT, "
    "has_text INTEGER NOT NULL)",
    f"CREATE VIRTUAL TABLE documents_fts USING fts5(title, text, content='', tokenize='{TOKENIZER}')",
    f"CREATE VIRTUAL TABLE annotations_fts USING fts5(body, exact, tags, tokenize='{TOKENIZER}')",
)

_STATE_KEYS = ("format", "fold", "sqlite", "archive", "seq", "seq_hash", "documents", "revisions")

_NEW_DOCUMENTS = """
SELECT d.id, s.title, t.document IS NOT NULL, t.text
FROM documents d JOIN document_state s ON s.document = d.id
LEFT JOIN texts t ON t.document = d.id
WHERE d.id > ? ORDER BY d.id
"""

#: Documents indexed before with a state event since: their title may have changed.
_STATE_CHANGES = f"""
SELECT document FROM events
WHERE seq > ? AND document IS NOT NULL AND document <= ? AND action IN {store.STATE_ACTIONS_SQL}
ORDER BY seq
"""

_ANNOTATION_TEXT = ("SELECT id, body, exact, (SELECT group_concat(value, ' ') FROM json_each(tags)) "
                    "FROM annotations WHERE status = 'active'")

_DOC_ROWS = f"""
SELECT d.id, s.title, d.media_type, t.text, NOT {PUBLIC.replace(':doc', 'd.id')} AS restricted
FROM documents d JOIN document_state s ON s.document = d.id
LEFT JOIN texts t ON t.document = d.id
WHERE d.id IN ({{ids}}) ORDER BY d.id
"""

_ANN_ROWS = f"""
SELECT a.id, a.document, a.exact, a.body, a.author, a.modified, l.name AS layer, s.title,
       NOT {PUBLIC.replace(':doc', 'a.document')} AS restricted
FROM annotations a JOIN document_state s ON s.document = a.document
JOIN layers l ON l.id = a.layer
WHERE a.id IN ({{ids}}) AND a.status = 'active' ORDER BY a.id
"""

_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def default_index_path(archive_path: str | os.PathLike) -> Path:
    """Where the index of ``archive_path`` lives unless told: ``<archive>-workbench/search.db``."""
    archive = Path(archive_path)
    return archive.with_name(archive.name + "-workbench") / "search.db"


class _Damaged(Exception):
    """The index file is corrupt or not a database: it is rebuilt."""


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class _Index:
    """The index's connection: every statement through here, so that a corrupt file (and only
    the index file, not the archive read beside it) is told apart as :class:`_Damaged`."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)

    def _guard(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _DAMAGED:
                raise _Damaged(str(exc)) from exc
            raise

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self._guard(lambda: self.conn.execute(sql, tuple(params)).fetchall())

    def run(self, sql: str, params: Iterable[Any] = ()) -> None:
        self._guard(lambda: self.conn.execute(sql, tuple(params)))

    def many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self._guard(lambda: self.conn.executemany(sql, rows))

    def close(self) -> None:
        self.conn.close()


def _batches(rows: Iterable[tuple], text_at: int | None = None) -> Iterator[list[tuple]]:
    """Rows in lists of at most :data:`BATCH_ROWS`, cut sooner past :data:`BATCH_CHARS` of the
    text at ``text_at``: one list in memory at a time."""
    batch: list[tuple] = []
    chars = 0
    for row in rows:
        batch.append(row)
        if text_at is not None and row[text_at]:
            chars += len(row[text_at])
        if len(batch) >= BATCH_ROWS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class StaffSearch:
    """The private full-text index of one archive, kept up to date on each call (see the
    module's docstring). ``close()`` when done; also a context manager."""

    def __init__(self, archive_path: str | os.PathLike,
                 index_path: str | os.PathLike | None = None) -> None:
        self.archive_path = os.fspath(archive_path)
        if not os.path.isfile(self.archive_path):
            raise NotFound(f"no archive at {self.archive_path}")
        self.index_path = os.fspath(index_path if index_path is not None
                                    else default_index_path(self.archive_path))
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._identity: tuple[int, int] | None = None
        self._closed = False
        with self._lock:
            self._open()

    # -- the public interface -------------------------------------------------------------

    def refresh(self) -> dict[str, Any]:
        """Bring the index up to date with the archive. Returns what it did: ``rebuilt``
        (bool), ``documents_added``, ``titles_changed``, ``annotations_added``,
        ``annotations_changed``, ``annotations_removed``."""
        with self._lock:
            return self._call(self._refresh)

    def search(self, q: str, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """Refresh, then find ``q`` as the public search page does, over every document and
        current annotation: ``{"documents": [...], "annotations": [...], "document_count": N,
        "annotation_count": N}``, the counts stopping at ``COUNT_CAP + 1``; ``limit`` and
        ``offset`` page each list (by id)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInput(f"limit {limit!r}: a whole number, 0 or more")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput(f"offset {offset!r}: a whole number, 0 or more")

        def refresh_and_search(archive: sqlite3.Connection) -> dict[str, Any]:
            self._refresh(archive)
            return self._search(archive, q, limit, offset)

        with self._lock:
            return self._call(refresh_and_search)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._index is not None:
                self._index.close()
                self._index = None

    def __enter__(self) -> "StaffSearch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the index file -------------------------------------------------------------------

    def _open(self) -> None:
        """Open the index file, creating its folder (0700) and the file (0600) if need be."""
        folder = os.path.dirname(os.path.abspath(self.index_path))
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)
            os.chmod(folder, FOLDER_MODE)  # whatever the umask
        fd = os.open(self.index_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        os.chmod(self.index_path, FILE_MODE)  # whatever the umask, and an existing file too
        self._index = _Index(self.index_path)
        self._identity = (info.st_dev, info.st_ino)

    def _remove(self) -> None:
        """Close and delete the index file (and any journal beside it)."""
        if self._index is not None:
            self._index.close()
            self._index = None
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(self.index_path + suffix)
            except FileNotFoundError:
                pass

    def _reopen_if_replaced(self) -> None:
        """Deleted or replaced since it was opened (by a person, or another process's
        rebuild): open the file that is there now."""
        try:
            info = os.stat(self.index_path)
            same = (info.st_dev, info.st_ino) == self._identity
        except FileNotFoundError:
            same = False
        if not same:
            if self._index is not None:
                self._index.close()
                self._index = None
            self._open()

    def _call(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` with the archive open read-only in one read transaction; a damaged
        index is deleted and ``work`` runs once more on a new one."""
        if self._closed:
            raise StetError("the staff search index is closed")
        for attempt in (1, 2):
            self._reopen_if_replaced()
            archive = store.connect(self.archive_path, mode="read").conn
            try:
                archive.execute("BEGIN")  # one snapshot of the archive for all of it
                return work(archive)
            except _Damaged:
                if attempt == 2:
                    raise StetError(f"{self.index_path}: the index cannot be rebuilt") from None
                self._remove()
                self._open()
            finally:
                archive.close()  # ends the read transaction: nothing was written
        raise AssertionError("unreachable")

    # -- keeping it up to date ------------------------------------------------------------

    def _state(self) -> dict[str, Any] | None:
        """What the index has read, or None (no usable index: rebuild)."""
        assert self._index is not None
        try:
            state = dict(self._index.rows("SELECT key, value FROM state"))
        except (sqlite3.DatabaseError, _Damaged):
            return None  # a new, empty file, another database, or not a database at all
        if any(key not in state for key in _STATE_KEYS):
            return None
        return state

    @staticmethod
    def _archive_head(archive: sqlite3.Connection) -> dict[str, Any]:
        first, seq, documents, revisions = archive.execute(
            "SELECT (SELECT hash FROM events WHERE seq = 1), "
            "(SELECT coalesce(max(seq), 0) FROM events), "
            "(SELECT coalesce(max(id), 0) FROM documents), "
            "(SELECT coalesce(max(id), 0) FROM annotation_revisions)").fetchone()
        seq_hash = archive.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return {"format": FORMAT, "fold": FOLD_KEY, "sqlite": sqlite3.sqlite_version,
                "archive": first or "", "seq": seq, "seq_hash": seq_hash[0] if seq_hash else "",
                "documents": documents, "revisions": revisions}

    @staticmethod
    def _continues(state: dict[str, Any], head: dict[str, Any],
                   archive: sqlite3.Connection) -> bool:
        """Whether the index was made by this code from an earlier state of this archive."""
        if any(state[key] != head[key] for key in ("format", "fold", "sqlite", "archive")):
            return False
        if any(state[key] > head[key] for key in ("seq", "documents", "revisions")):
            return False
        if state["seq"]:
            row = archive.execute("SELECT hash FROM events WHERE seq = ?", (state["seq"],)).fetchone()
            if row is None or row[0] != state["seq_hash"]:
                return False
        return True

    def _refresh(self, archive: sqlite3.Connection) -> dict[str, Any]:
        counts: dict[str, Any] = {"rebuilt": False, "documents_added": 0, "titles_changed": 0,
                                  "annotations_added": 0, "annotations_changed": 0,
                                  "annotations_removed": 0}
        head = self._archive_head(archive)
        state = self._state()
        if state is None or not self._continues(state, head, archive):
            if state is not None or os.path.getsize(self.index_path):
                self._remove()  # start from an empty file: no page of the old one is kept
                self._open()
            state = None
            counts["rebuilt"] = True
        elif all(state[key] == head[key] for key in ("seq", "documents", "revisions")):
            return counts
        index = self._index
        assert index is not None
        index.run("BEGIN IMMEDIATE")
        try:
            if state is None:
                for sql in _SCHEMA:
                    index.run(sql)
                state = {"seq": 0, "documents": 0, "revisions": 0}
            counts["documents_added"] = self._add_documents(archive, state["documents"])
            if state["documents"]:
                counts["titles_changed"] = self._retitle(archive, state["seq"], state["documents"])
            if state["revisions"]:
                self._update_annotations(archive, state["revisions"], counts)
            else:
                counts["annotations_added"] = self._add_annotations(archive)
            index.many("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                       [(key, head[key]) for key in _STATE_KEYS])
            if counts["rebuilt"]:
                index.run("INSERT INTO documents_fts (documents_fts) VALUES ('optimize')")
                index.run("INSERT INTO annotations_fts (annotations_fts) VALUES ('optimize')")
            index.run("COMMIT")
        except BaseException:
            if self._index is not None and self._index.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._index.conn.execute("ROLLBACK")
            raise
        return counts

    def _add_documents(self, archive: sqlite3.Connection, after: int) -> int:
        index = self._index
        assert index is not None
        added = 0
        for batch in _batches(archive.execute(_NEW_DOCUMENTS, (after,)), text_at=3):
            titles = [(doc_id, fold(title), int(has_text)) for doc_id, title, has_text, _ in batch]
            index.many("INSERT INTO documents_fts (rowid, title, text) VALUES (?, ?, ?)",
                       [(doc_id, title, fold(row[3]))
                        for (doc_id, title, _), row in zip(titles, batch)])
            index.many("INSERT INTO document_titles (id, title, has_text) VALUES (?, ?, ?)", titles)
            added += len(batch)
        return added

    def _retitle(self, archive: sqlite3.Connection, after_seq: int, indexed: int) -> int:
        """Re-index the title of each document indexed before with a state event since, when
        its current title (folded) is not the one indexed."""
        index = self._index
        assert index is not None
        changed = 0
        for batch in _batches(archive.execute(_STATE_CHANGES, (after_seq, indexed))):
            ids = sorted({doc_id for (doc_id,) in batch})
            current = dict(archive.execute(
                f"SELECT document, title FROM document_state WHERE document IN ({_marks(len(ids))})",
                ids).fetchall())
            before = {doc_id: (title, has_text) for doc_id, title, has_text in index.rows(
                f"SELECT id, title, has_text FROM document_titles WHERE id IN ({_marks(len(ids))})",
                ids)}
            for doc_id in ids:
                title = fold(current.get(doc_id))
                if doc_id in before and before[doc_id][0] == title:
                    continue
                row = archive.execute("SELECT text FROM texts WHERE document = ?",
                                      (doc_id,)).fetchone()
                text = fold(row[0]) if row else None
                if doc_id in before:
                    old_title, had_text = before[doc_id]
                    index.run("INSERT INTO documents_fts (documents_fts, rowid, title, text) "
                              "VALUES ('delete', ?, ?, ?)",
                              (doc_id, old_title, text if had_text else None))
                index.run("INSERT INTO documents_fts (rowid, title, text) VALUES (?, ?, ?)",
                          (doc_id, title, text))
                index.run("INSERT OR REPLACE INTO document_titles (id, title, has_text) "
                          "VALUES (?, ?, ?)", (doc_id, title, int(row is not None)))
                changed += 1
        return changed

    def _add_annotations(self, archive: sqlite3.Connection) -> int:
        index = self._index
        assert index is not None
        added = 0
        for batch in _batches(archive.execute(_ANNOTATION_TEXT + " ORDER BY id"), text_at=1):
            index.many("INSERT INTO annotations_fts (rowid, body, exact, tags) VALUES (?, ?, ?, ?)",
                       [(ann_id, fold(body), fold(exact), fold(tags))
                        for ann_id, body, exact, tags in batch])
            added += len(batch)
        return added

    def _update_annotations(self, archive: sqlite3.Connection, after: int,
                            counts: dict[str, Any]) -> None:
        """Re-index the current state of each annotation with a revision since ``after``:
        added, changed, or removed (retracted)."""
        index = self._index
        assert index is not None
        revised = archive.execute(
            "SELECT annotation FROM annotation_revisions WHERE id > ? ORDER BY id", (after,))
        for batch in _batches(revised):
            ids = sorted({ann_id for (ann_id,) in batch})
            marks = _marks(len(ids))
            before = {row[0]: row[1:] for row in index.rows(
                f"SELECT rowid, body, exact, tags FROM annotations_fts WHERE rowid IN ({marks})", ids)}
            now = {row[0]: (fold(row[1]), fold(row[2]), fold(row[3])) for row in archive.execute(
                f"{_ANNOTATION_TEXT} AND id IN ({marks})", ids)}
            stale = [(ann_id,) for ann_id in before if now.get(ann_id) != before[ann_id]]
            fresh = [(ann_id, *values) for ann_id, values in now.items()
                     if before.get(ann_id) != values]
            index.many("DELETE FROM annotations_fts WHERE rowid = ?", stale)
            index.many("INSERT INTO annotations_fts (rowid, body, exact, tags) VALUES (?, ?, ?, ?)",
                       fresh)
            counts["annotations_added"] += sum(1 for row in fresh if row[0] not in before)
            counts["annotations_changed"] += sum(1 for row in fresh if row[0] in before)
            counts["annotations_removed"] += sum(1 for (ann_id,) in stale if ann_id not in now)

    # -- searching ------------------------------------------------------------------------

    def _search(self, archive: sqlite3.Connection, q: str, limit: int, offset: int) -> dict[str, Any]:
        result: dict[str, Any] = {"documents": [], "annotations": [], "document_count": 0,
                                  "annotation_count": 0}
        match = fts_query(q or "")
        if not match:
            return result
        index = self._index
        assert index is not None
        found = {}
        try:
            for kind, table in (("document", "documents_fts"), ("annotation", "annotations_fts")):
                result[f"{kind}_count"] = index.rows(
                    f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? "
                    f"LIMIT {COUNT_CAP + 1})", (match,))[0][0]
                found[kind] = [rowid for (rowid,) in index.rows(
                    f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid "
                    "LIMIT ? OFFSET ?", (match, limit, offset))]
        except sqlite3.OperationalError as exc:  # a query FTS5 refuses
            raise InvalidInput(f"could not search for {q!r}: {exc}") from None
        if found["document"]:
            ids = found["document"]
            for doc_id, title, media_type, text, restricted in archive.execute(
                    _DOC_ROWS.format(ids=_marks(len(ids))), ids):
                result["documents"].append({
                    "id": doc_id, "title": title, "media_type": media_type,
                    "context": highlight.snippet(text, q), "restricted": bool(restricted)})
        if found["annotation"]:
            ids = found["annotation"]
            cursor = archive.execute(_ANN_ROWS.format(ids=_marks(len(ids))), ids)
            names = [column[0] for column in cursor.description]
            for row in cursor:
                record = dict(zip(names, row))
                record["restricted"] = bool(record["restricted"])
                result["annotations"].append(record)
        return result
