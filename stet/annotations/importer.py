# Over 400 lines on purpose: one concern, the bulk import; its steps (match, check for
# conflicts, write rows, check them, rebuild the current state) share the Importer's state.
"""The bulk import: parsed W3C annotations into the archive, file by file.

:func:`import_files` runs an :class:`Importer` over each file (parsed here, or in a worker
process for a large one: :mod:`stet.annotations.worker`) inside the caller's write
transaction, with one ``import`` event per file. The importer writes rows with
``executemany`` in batches, with the per-row triggers of ``annotation_revisions`` dropped for
the transaction: :class:`RowChecks` applies their rules to each batch set-based, refusing
exactly what they refuse, and :meth:`Importer.finish` writes the current state and creates
the triggers again. It looks documents, layers and known annotations up once and keeps what
it learns of each annotation in a :class:`Known` (small: no text), and at most
:data:`TEXT_BUDGET` code points of document texts (:class:`Texts`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from .. import store, timeutil
from ..errors import InvalidInput, NotFound, StetError, arg
from ..provenance import Chain
from . import anchoring
from .files import files, parsed_batches, read
from .layers import add_layer, check_colour, check_layer_name, find_layer
from .model import check_motivation, check_tags
from .rowchecks import OLD_ANNOTATION_RECREATED, RowChecks
from .schema import CURRENT_FROM_IMPORT, INSERT_REVISION, MOTIVATIONS, layer_targets
from .w3c import Parsed, parse
from .worker import parse_in_worker, worth_a_worker

#: How far in the future an imported time (``created`` or ``modified``) may lie: the clocks
#: of the archive that wrote a file and of this one may disagree by this much, no more. A
#: revision dated later is refused: ``revise`` never dates a revision before the last one,
#: so one revision from the future would date every later revision (and its event) there,
#: and hide them all from ``--at``.
CLOCK_SKEW_MINUTES = 5
CLOCK_SKEW_US = CLOCK_SKEW_MINUTES * 60 * 1_000_000
#: Code points of document text an import keeps at most (the texts used last; always the
#: one in use): a file's annotations may touch every document of the archive.
TEXT_BUDGET = 32 << 20

_MOTIVATIONS = frozenset(MOTIVATIONS)
#: What :meth:`Importer._row` returns for an annotation whose document is not here.
_MISSING = object()
_NO_SPAN = (None,) * 5
#: What an import compares of a stored revision with the file's, when it meets an IRI it
#: holds (see :meth:`Importer._same`, which reads them by position).
_COMPARED = ("body, author, modified_us, status, motivation, reason, creator, created, "
             'start, "end", exact, tags, reply_to, layer, document')
#: An import's lookup of annotations by uuid: a :class:`Known`, then the current state's
#: revision number and :data:`_COMPARED`.
#: (The layer a :class:`Known` keeps is the one its revisions are made in, revision 1's:
#: the current state's may differ, after a layer was renamed or merged.)
_LOOKUP = ("SELECT uuid, id, revision, modified_us, status = 'retracted', document, "
           "(SELECT r.layer FROM annotation_revisions r WHERE r.annotation = annotations.id "
           "AND r.revision = 1), "
           f"creator, created, reply_to, revision, {_COMPARED} FROM annotations "
           "WHERE uuid IN ({})")
_STORED_REVISIONS = (f"SELECT annotation, revision, {_COMPARED} FROM annotation_revisions "
                     "WHERE annotation IN ({})")


#: The current state's secondary indexes are dropped and built again after the import's rows
#: go in when it creates at least this many annotations and at least half as many as the
#: archive had (building an index sorts once: 1.2 s for the three at 1,000,000 rows, against
#: 6-7 µs a row to update them as the rows go in).
REBUILD_INDEXES_FROM = 10_000
#: The secondary indexes of ``annotation_revisions`` are dropped once an import has written at
#: least this many revision rows and as many as the archive had, and built again at the end
#: (about 3 µs a row saved as they go in; the build costs about 0.5 µs a row of the whole
#: table, so at worst, when the import ends just then, it costs 1 µs a row written).
REBUILD_REVISION_INDEXES_FROM = 10_000


def digest_lines(digest, rows: list[tuple]) -> None:
    """Feed ``digest`` what :func:`~stet.annotations.model.rows_digest` hashes of ``rows``:
    each row as a JSON array and a newline, the same bytes, without reading the rows back.

    orjson writes a list of rows in one call several times as fast as row by row, as
    ``[row,row,...]``: each row's bytes as it writes them alone, joined by commas. Every
    place where one row ends and the next begins is ``],[`` (a row holds no list: its values
    are numbers, strings and nulls), so when ``],[`` occurs exactly ``len(rows) - 1`` times
    there is no other (the three bytes cannot overlap themselves) and each is a boundary.
    A batch with ``],[`` in a string (rare) is written row by row."""
    whole = orjson.dumps(rows)
    if whole.count(b"],[") == len(rows) - 1:
        digest.update(memoryview(whole.replace(b"],[", b"]\n["))[1:-1])
        digest.update(b"\n")
    else:
        digest.update(b"\n".join(map(orjson.dumps, rows)) + b"\n")


def _secondary_indexes(conn, table: str = "annotations") -> list[tuple[str, str]]:
    """The indexes of ``table`` created by a migration (not a constraint's), with their SQL,
    in their order."""
    return conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name = ? AND sql IS NOT NULL ORDER BY rowid", (table,)).fetchall()


def import_files(conn, chain: Chain, paths: Iterable[str | os.PathLike], *, by: str,
                 progress: Callable[[Path], Any] | None = None,
                 skip_missing: bool = False) -> list[dict[str, Any]]:
    """Import W3C files into the archive, one event per file, inside the caller's
    transaction (so a malformed file anywhere writes nothing); one result per file.
    ``progress(path)`` is called after each file.

    A file holding annotations on documents this archive does not have is refused (the
    error says how many such annotations, and the first), unless ``skip_missing``: then
    they (with their replies and revisions) are left out, and the file's result counts
    them (``missing``)."""
    importer = Importer(conn, chain, by=by, skip_missing=skip_missing)
    results = []
    with store.page_cache(conn, 256):  # random uuids spread over the index
        for path in files(paths):
            digest: list[str] = []
            before = conn.execute(
                "SELECT coalesce(max(id), 0) FROM annotation_revisions").fetchone()[0]
            try:
                if worth_a_worker(path):
                    batches = parse_in_worker(path, importer.BATCH, digest)
                    with contextlib.closing(batches):  # a refusal stops the worker at once
                        counts = importer.run_batches(batches)
                else:
                    counts = importer.run(read(path, digest), parse)
                if counts.get("missing") and not skip_missing:
                    n, first = counts["missing"], importer.first_missing
                    raise InvalidInput(
                        f"{n} annotation{'' if n == 1 else 's'} on documents this archive does "
                        f"not hold (the first: {first}); nothing was imported "
                        f"({arg('skip_missing')} imports the rest)")
            except StetError as exc:
                raise InvalidInput(f"{path}: {exc.message}") from None
            result = {"file": str(path), "sha256": digest[0], **counts}
            carried = importer.flush(chain.head()[0] + 1)
            chain.append(actor=by, action="import", subject=f"file:{path.name}",
                         details={**result, "file": os.path.abspath(path),
                                  "rows": importer.written_rows(before + 1),
                                  **({"anchoring": carried} if carried else {})})
            results.append(result)
            if progress is not None:
                progress(path)
        importer.finish()
    return results


@dataclass(slots=True)
class Known:
    """What an import knows of an annotation: where its revisions stand (the latest, in the
    archive or written by this import) and what every revision must keep."""

    id: int
    revision: int
    modified_us: int
    retracted: bool
    document: int
    layer: int
    creator: str
    created: str
    reply_to: int | None

    def identity(self) -> tuple:
        return (self.document, self.layer, self.creator, self.created, self.reply_to)


class Texts:
    """``(document id, text)`` by SHA-256, the ones used last kept within ``budget`` code
    points (always at least one)."""

    def __init__(self, conn, budget: int | None = None) -> None:
        self.conn, self.budget = conn, TEXT_BUDGET if budget is None else budget
        self.held: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self.size = 0

    def __getitem__(self, sha: str) -> tuple[int, str]:
        found = self.held.get(sha)
        if found is not None:
            self.held.move_to_end(sha)
            return found
        row = self.conn.execute(
            "SELECT d.id, t.text FROM documents d JOIN texts t ON t.document = d.id "
            "WHERE d.sha256 = ?", (sha,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no document with SHA-256 {sha} in this archive")
        found = self.held[sha] = (row[0], row[1])
        self.size += len(row[1])
        while self.size > self.budget and len(self.held) > 1:
            self.size -= len(self.held.popitem(last=False)[1][1])
        return found


class Importer:
    """Writes parsed W3C annotations (see :func:`stet.annotations.w3c.parse`) into the
    archive, inside the caller's write transaction.

    Idempotent by IRI: an annotation (or, from a --history export, a revision) that the
    archive already has is skipped, but compared with what the archive holds (a revision
    with the same number; for a current-state export, any revision of the annotation): the
    counts name how many differ (``conflicts``) and the first one's IRI (``first_conflict``);
    the archive's record is kept. Every span is checked against the text here, in Python,
    before insert. Imported times may not lie in the future (beyond
    :data:`CLOCK_SKEW_MINUTES`), a revision is not dated before the one it follows nor
    before its annotation's creation, a first revision is not a retraction and nothing
    follows one (as :func:`~stet.annotations.model.revise` refuses).
    The per-row triggers of the revisions' inserts are dropped at the first insert (the
    current state's, and the checks :class:`RowChecks` then applies set-based to each batch),
    and :meth:`finish` writes the current state set-based and creates them all again: call it
    before committing. Once the import has written as many revision rows as the archive had
    (:data:`REBUILD_REVISION_INDEXES_FROM` at least), the revisions' secondary indexes are
    dropped too, and :meth:`finish` builds them again.
    """

    BATCH = 5000

    def __init__(self, conn, chain: Chain, *, by: str, skip_missing: bool = False) -> None:
        self.conn, self.chain, self.by = conn, chain, by
        self.skip_missing = skip_missing
        self.missing: set[str] = set()  # uuids left out: their documents are not here
        self.first_missing: str | None = None  # where the first of them is, and its document
        self.targets: dict[int, int] | None = None  # layer -> where it moved (read when needed)
        self.next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0]
        self.first_id = self.next_id  # annotations numbered from here are new in this import
        self.before: int | None = None  # the last revision row before this import wrote
        self.last = 0  # the last revision row written (once writing began)
        self.checks: RowChecks | None = None  # the triggers' rules while they are dropped
        self.revision_indexes: list[tuple[str, str]] | None = None  # dropped till finish
        self.revised_existing = False  # a new revision of an annotation the archive had
        self.texts = Texts(conn)
        self.layers: dict[str, int] = {}
        self.tags: dict[tuple[str, ...], str] = {}  # tags as given -> as stored (checked once)
        self.known: dict[str, Known] = {}  # by uuid
        # uuid -> (revision, _COMPARED) of the current state, for the batch that looked it up
        self.current: dict[str, tuple] = {}
        self.document_ids: dict[str, int | None] = {}  # SHA-256 -> document, for comparing
        self.written = 0  # revision rows the current file wrote, and their rows_digest:
        self.digest = hashlib.sha256()  # computed as they go in (see written_rows)
        # Annotations carried to a newer version in the archive they came from (stet:anchoring):
        # their anchoring rows name the file's import event, whose seq is known only once the
        # file is read; they are written then (:meth:`flush`), before the revision rows of an
        # orphan (which the database takes only after its anchoring row) and of every later
        # revision of one, held back till then.
        self.anchoring: list[tuple] = []  # (annotation, origin uuid, anchoring, score)
        self.held: list[tuple] = []
        self.held_ids: set[int] = set()
        moment = timeutil.now()
        self.now = timeutil.iso(moment)
        self.latest_us = timeutil.micros(moment) + CLOCK_SKEW_US  # no time after this

    def run(self, items: Iterable[tuple[str, dict[str, Any]]], parse) -> dict[str, int]:
        """Import ``(where, W3C annotation)`` pairs; return counts of what was done."""
        return self.run_batches(parsed_batches(items, parse, self.BATCH))

    def run_batches(self, batches: Iterable[list[tuple[str, Parsed]]]) -> dict[str, int]:
        """Import batches of ``(where, parsed annotation)`` pairs, in order (they may come
        from a worker process: :func:`stet.annotations.worker.parse_in_worker`)."""
        counts = {"annotations": 0, "revisions": 0, "skipped": 0, "conflicts": 0}
        self.written, self.digest = 0, hashlib.sha256()
        missing_before = len(self.missing)
        first: list[str] = []
        for batch in batches:
            self._batch(batch, counts, first)
        if first:
            counts["first_conflict"] = first[0]
        else:
            del counts["conflicts"]
        if len(self.missing) > missing_before:
            counts["missing"] = len(self.missing) - missing_before
        return counts

    def _batch(self, batch, counts, first_conflict: list[str]) -> None:
        self.current = {}
        if self.first_id > 1:  # (else the archive had none: only this import's are known)
            self._lookup({p.uuid for _, p in batch}
                         | {p.parent for _, p in batch if p.parent})
        rows = []
        skipped = []
        for where, parsed in batch:
            try:
                row = self._row(parsed)
            except StetError as exc:
                raise InvalidInput(f"{where}: {exc.message}") from None
            if row is None:
                skipped.append(parsed)
                continue
            if row is _MISSING:
                if self.first_missing is None:
                    self.first_missing = (f"{where}, urn:sha256:{parsed.source}"
                                          if parsed.source else where)
                continue
            if row[0] in self.held_ids or (row[6] is None and row[5] is None):
                self.held.append(row)  # an orphan, or a later revision of one: see flush
                self.held_ids.add(row[0])
            else:
                rows.append(row)
            counts["revisions"] += 1
            counts["annotations"] += row[1] == 1
        self._insert(rows)
        if skipped:  # after the insert: the stored revision may be one this batch wrote
            counts["skipped"] += len(skipped)
            for parsed in self._conflicts(skipped):
                counts["conflicts"] += 1
                if not first_conflict:
                    first_conflict.append(parsed.iri)

    def _insert(self, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.before is None:
            self._suspend_triggers()
        first = self.last + 1  # the ids these rows get: max(id) + 1 each
        try:
            self.conn.executemany(INSERT_REVISION, rows)
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
                sqlite3.ProgrammingError) as error:
            # A constraint (NOT NULL, a CHECK, UNIQUE, a foreign key) or a trigger kept in
            # place refused a row (or a value could not be bound), which the per-row path
            # refuses too, unless a trigger refused a row before it, or it (BEFORE triggers run
            # before constraints): the same error as the per-row path, whichever it is.
            written = self.conn.execute(
                "SELECT coalesce(max(id), 0) FROM annotation_revisions").fetchone()[0]
            self.checks.refused(first, rows[written - first + 1], error)
            raise
        self.last = first + len(rows) - 1
        self.checks.check(first, self.last)
        digest_lines(self.digest, rows)
        self.written += len(rows)
        if self.revision_indexes is None and self.last - self.before >= max(
                REBUILD_REVISION_INDEXES_FROM, self.before):
            self.revision_indexes = _secondary_indexes(self.conn, "annotation_revisions")
            for name, _ in self.revision_indexes:  # built again by finish
                self.conn.execute(f"DROP INDEX {name}")

    def flush(self, event: int) -> dict[str, Any] | None:
        """At the end of a file, before its import event (``event``, its seq): the anchoring
        rows of the carried annotations it brought, then the revision rows held back; what
        the event holds of the anchoring rows (``first``, ``last``, ``count``, ``sha256``),
        None when there were none."""
        from .versions import anchoring_digest

        recorded = None
        if self.anchoring:
            first = self.conn.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM annotation_anchoring").fetchone()[0]
            origins = {uuid: self.known[uuid].id for _, uuid, _, _ in self.anchoring
                       if uuid is not None and uuid in self.known}
            missing = [u for _, u, _, _ in self.anchoring if u is not None and u not in origins]
            for offset in range(0, len(missing), 500):
                part = missing[offset:offset + 500]
                origins.update(self.conn.execute(
                    f"SELECT uuid, id FROM annotations WHERE uuid IN ({', '.join('?' * len(part))})",
                    part).fetchall())
            self.conn.executemany(
                "INSERT INTO annotation_anchoring (annotation, origin, anchoring, score, event) "
                "VALUES (?, ?, ?, ?, ?)",
                [(annotation, origins.get(uuid), kind, round(score, 4), event)
                 for annotation, uuid, kind, score in self.anchoring])
            last = self.conn.execute("SELECT max(id) FROM annotation_anchoring").fetchone()[0]
            count, digest = anchoring_digest(self.conn, first, last)
            recorded = {"first": first, "last": last, "count": count, "sha256": digest}
        self._insert(self.held)
        self.anchoring, self.held, self.held_ids = [], [], set()
        return recorded

    def written_rows(self, first: int) -> dict[str, Any] | None:
        """What the import event of the last file run holds of the revision rows it wrote,
        their ids from ``first`` on (consecutive: ``max(id) + 1`` each): ``first``,
        ``last``, ``count`` and ``sha256``, equal to :func:`revisions_digest` over those ids
        (the values stored are the values given: each column gets the type it declares).
        None when the file wrote none."""
        if not self.written:
            return None
        last = first + self.written - 1
        found = self.conn.execute("SELECT max(id) FROM annotation_revisions").fetchone()[0]
        if found != last:
            raise StetError(f"the import wrote {self.written} revision rows from id {first}, "
                            f"but the last id is {found}")
        return {"first": first, "last": last, "count": self.written,
                "sha256": self.digest.hexdigest()}

    def _conflicts(self, skipped: list[Parsed]) -> Iterable[Parsed]:
        """The skipped annotations (already here by IRI) whose content differs from every
        stored revision they could be: the one with the same number (a revision of a
        --history export), or any revision of the annotation (a current-state export is a
        snapshot of one of them). The stored revisions are read in batches."""
        rest = []
        for p in skipped:  # most often the current state, read with the lookup by uuid
            current = self.current.get(p.uuid)
            if current is None or (p.revision or current[0]) != current[0] \
                    or not self._same(p, current[1:]):
                rest.append(p)
        if not rest:
            return
        ids = list({self.known[p.uuid].id for p in rest})
        stored: dict[int, dict[int, tuple]] = {}
        for offset in range(0, len(ids), 500):
            part = ids[offset:offset + 500]
            for row in self.conn.execute(_STORED_REVISIONS.format(", ".join("?" * len(part))),
                                         part):
                stored.setdefault(row[0], {})[row[1]] = row[2:]
        for p in rest:
            revisions = stored.get(self.known[p.uuid].id, {})
            if p.revision is not None:
                candidates = [revisions.get(p.revision)]
            else:
                candidates = list(revisions.values())
            if not any(s is not None and self._same(p, s) for s in candidates):
                yield p

    def _same(self, p: Parsed, s: tuple) -> bool:
        """Whether a parsed annotation says what a stored revision says (``s``: the columns of
        :data:`_COMPARED`). What the file does not give (a position, a quote, a document) is
        not compared."""
        start, end, exact = p.start, p.end, p.exact
        if (p.body, p.author, p.modified_us, p.status, p.motivation, p.reason,
                p.creator, p.created, s[8] if start is None else start,
                s[9] if end is None else end, s[10] if exact is None else exact) != s[:11]:
            return False
        tags = p.tags
        if tags:
            tags = self.tags.get(tags) or orjson.dumps(list(dict.fromkeys(tags))).decode()
        if (tags or "[]") != s[11]:
            return False
        parent = self.known.get(p.parent) if p.parent is not None else None
        return ((parent.id if parent is not None else None) == s[12]
                and (self.layers.get(p.layer) or self._existing_layer(p.layer))
                == self._target(s[13])
                and (p.source is None or self._document_id(p.source) == s[14]))

    def _existing_layer(self, name: str) -> int | None:
        found = find_layer(self.conn, name)
        if found is not None:
            self.layers[name] = found[0]
        return found[0] if found else None

    def _target(self, layer: int | None) -> int | None:
        """Where a layer's annotations are now (itself, unless it was renamed or merged)."""
        if self.targets is None:
            self.targets = dict(self.conn.execute(layer_targets()).fetchall())
        return self.targets.get(layer, layer)

    def _document_id(self, sha: str) -> int | None:
        if sha not in self.document_ids:
            row = self.conn.execute("SELECT id FROM documents WHERE sha256 = ?", (sha,)).fetchone()
            self.document_ids[sha] = row[0] if row else None
        return self.document_ids[sha]

    def _suspend_triggers(self) -> None:
        """Drop the per-row triggers of ``annotation_revisions``' inserts for the rest of
        this transaction (:class:`RowChecks`); :meth:`finish` writes the current state
        set-based and creates them again."""
        self.before = self.last = self.conn.execute(
            "SELECT coalesce(max(id), 0) FROM annotation_revisions").fetchone()[0]
        self.checks = RowChecks(self.conn, self.before)
        self.checks.drop()

    def finish(self) -> None:
        """Bring ``annotations`` up to date with the revisions this import wrote and restore
        the triggers, in the same transaction. Call once after the last :meth:`run`; if
        anything failed, the caller rolls back instead (which restores the triggers too)."""
        if self.before is None:
            return
        params = {"before": self.before, "first": self.first_id}
        update, insert = CURRENT_FROM_IMPORT
        # New revisions of annotations the archive had: their latest is the current state.
        # (Skipped when there are none: the statement scans every new revision, 1.3 s at 1M.)
        if self.revised_existing:
            self.conn.execute(update, params)
        # Annotations this import created: the latest of their revisions, in id order. When
        # they are many against those the archive had, the current state's secondary indexes
        # are built again after (sorting once) rather than updated row by row.
        created = self.next_id - self.first_id
        rebuilt = _secondary_indexes(self.conn) if created >= max(
            REBUILD_INDEXES_FROM, (self.first_id - 1) // 2) else []
        for name, _ in rebuilt:
            self.conn.execute(f"DROP INDEX {name}")
        # What the current state's trigger refuses per row, the INSERT refuses here (a uuid
        # the current state has), with the same error, found for the first row it concerns.
        if self.conn.execute(OLD_ANNOTATION_RECREATED, params).fetchone():
            self.checks.refuse_current_state(self.last + 1)
        try:
            self.conn.execute(insert, params)
        except sqlite3.IntegrityError:
            self.checks.refuse_current_state(self.last + 1)
            raise
        for _, sql in rebuilt + (self.revision_indexes or []):
            self.conn.execute(sql)
        self.checks.restore()
        self.before = self.revision_indexes = None

    def _lookup(self, uuids: set[str]) -> None:
        if self.first_id == 1:
            return  # the archive had no annotations: only this import's are known
        missing = [u for u in uuids if u not in self.known]
        for offset in range(0, len(missing), 500):
            part = missing[offset:offset + 500]
            for row in self.conn.execute(_LOOKUP.format(", ".join("?" * len(part))), part):
                self.known[row[0]] = Known(*row[1:10])
                self.current[row[0]] = row[10:]

    def _row(self, p: Parsed) -> tuple | None:
        uuid, source = p.uuid, p.source
        state = self.known.get(uuid)
        if state is None and (uuid in self.missing or p.parent in self.missing or (
                source is not None and source not in self.texts.held  # (held: it is here)
                and self._document_id(source) is None)):
            self.missing.add(uuid)  # its document is not here (or its parent's is not)
            return _MISSING
        revision = p.revision
        if state is not None and (revision is None or revision <= state.revision):
            return None  # already here: idempotent by IRI
        if revision is None:
            revision = 1
        if state is None and revision != 1:
            raise InvalidInput(f"revision {revision} of urn:uuid:{p.uuid}: "
                               "the revisions before it are neither in the archive nor the file")
        if state is not None and revision != state.revision + 1:
            raise InvalidInput(f"revision {revision} of urn:uuid:{p.uuid}: the archive has "
                               f"revisions up to {state.revision} only")
        if state is not None and state.retracted:
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} follows its retraction: "
                               "a retracted annotation cannot be revised")
        if p.modified_us > self.latest_us or p.created_us > self.latest_us:
            raise InvalidInput(self._future(p, revision))
        if p.modified_us < p.created_us:
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} is dated {p.modified}, "
                               f"before its annotation was created ({p.created})")
        if revision == 1 and p.status == "retracted":
            raise InvalidInput(f"revision 1 of urn:uuid:{uuid} is a retraction: an annotation "
                               "cannot begin retracted")
        reply_to = document = None
        if p.parent is not None:
            parent = self.known.get(p.parent)
            if parent is None:
                raise InvalidInput(f"replies to urn:uuid:{p.parent}, which is neither in "
                                   "the archive nor earlier in the file")
            reply_to, document = parent.id, parent.document
        span = _NO_SPAN
        if source is not None:
            doc, text = self.texts[source]
            if document is not None and doc != document:
                raise InvalidInput("a reply's span must be on its parent's document")
            document = doc
            start, end, exact = p.start, p.end, p.exact
            if start is None and exact is None:  # carried, orphaned: no span (parse checked)
                pass
            elif type(start) is int and type(end) is int and 0 <= start < end <= len(text) \
                    and exact == text[start:end]:  # the common case: the quote is there
                span = (start, end, exact, text[max(0, start - anchoring.CONTEXT):start],
                        text[end:end + anchoring.CONTEXT])
            else:  # no position, a bad one or another quote: checked and found as it may be
                span = tuple(anchoring.reanchor(text, start, end, exact, p.prefix,
                                                p.suffix))
        layer = self.layers.get(p.layer) or self._layer(p.layer, p)
        if state is None:
            number = self.next_id
            self.next_id += 1
            state = self.known[uuid] = Known(number, 0, p.modified_us, False, document,
                                             layer, p.creator, p.created, reply_to)
        elif (state.document, self._target(state.layer), state.creator, state.created,
              state.reply_to) != (document, layer, p.creator, p.created, reply_to):
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} does not keep its "
                               "annotation's document, layer, creator, created or reply_to")
        elif p.modified_us < state.modified_us:
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} is dated before "
                               "the revision it follows")
        state.revision, state.modified_us = revision, p.modified_us
        state.retracted = p.status == "retracted"
        if state.id < self.first_id:
            self.revised_existing = True
        tags = p.tags
        stored_tags = self.tags.get(tags)
        if stored_tags is None:
            stored_tags = self.tags[tags] = check_tags(tags)
        motivation = p.motivation
        if motivation not in _MOTIVATIONS:
            check_motivation(motivation)
        if revision == 1 and p.anchoring is not None:
            # an orphan's first revision is orphaned, whatever a later one became
            kind = "orphaned" if span[0] is None and reply_to is None else p.anchoring
            self.anchoring.append((state.id, p.origin, kind,
                                   p.score if kind == p.anchoring else 0.0))
        return (state.id, revision, uuid, document, state.layer, reply_to, *span, p.body,
                motivation, stored_tags, p.creator, p.author, p.created, p.modified,
                p.modified_us, p.status, p.reason)

    def _future(self, p: Parsed, revision: int) -> str:
        skew = (f"in the future (this archive's clock says {self.now}; "
                f"{CLOCK_SKEW_MINUTES} minutes of clock skew are allowed)")
        if p.created_us > self.latest_us:
            return f"urn:uuid:{p.uuid} was created {p.created}, {skew}"
        return f"revision {revision} of urn:uuid:{p.uuid} is dated {p.modified}, {skew}"

    def _layer(self, name: str, parsed: Parsed | None = None) -> int:
        """A layer by name (followed to where a renamed or merged one went), created on
        first use with the colour and description the file gives it."""
        found = self.layers.get(name)
        if found is None:
            existing = find_layer(self.conn, check_layer_name(name))
            if existing is not None:
                found = existing[0]
            else:
                found = add_layer(
                    self.conn, self.chain, name, by=self.by,
                    description=parsed.layer_description if parsed is not None else None,
                    colour=check_colour(parsed.layer_colour if parsed is not None else None))["id"]
            self.layers[name] = found
        return found
