"""Versioned span annotations: layers, revisions, the current state and the past.

``annotation_revisions`` is the source of truth and only ever grows: revision 1 creates an
annotation, each edit appends the next revision, a retraction appends a tombstone (status
``retracted``). ``annotations`` is the current state, one row per annotation, maintained by
triggers on every insert (a bulk import, :class:`Importer`, writes it set-based instead, in
the same transaction). The state at a past instant is the latest revision of each
annotation whose ``modified_us`` is at or before it.

Every function that writes takes the :class:`~stet.provenance.Chain` of the caller's write
transaction (``Archive.write()``) and appends its event there, so the revision and its event
commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from . import anchoring, timeutil
from .errors import InvalidInput, NotFound, StetError
from .hashing import sha256_json
from .provenance import Chain
from .store import CURRENT_STATE_TRIGGER_NAMES, CURRENT_STATE_TRIGGERS

#: The W3C Web Annotation motivations, and stet's one extension.
MOTIVATIONS = (
    "assessing", "bookmarking", "classifying", "commenting", "describing", "editing",
    "highlighting", "identifying", "linking", "moderating", "questioning", "replying",
    "tagging", "correcting",
)
_MOTIVATIONS = frozenset(MOTIVATIONS)

#: Columns of a revision row, in insert order.
REVISION_COLUMNS = (
    "annotation", "revision", "uuid", "document", "layer", "reply_to", "start", "end", "exact",
    "prefix", "suffix", "body", "motivation", "tags", "creator", "author", "created",
    "modified", "modified_us", "status", "reason",
)
INSERT_REVISION = (
    "INSERT INTO annotation_revisions (" + ", ".join(f'"{c}"' for c in REVISION_COLUMNS) + ") "
    f"VALUES ({', '.join('?' * len(REVISION_COLUMNS))})"
)

#: Fields of an annotation's JSON, in order (DESIGN.md's list, plus creator and reason).
FIELDS = (
    "id", "uuid", "document", "layer", "reply_to", "start", "end", "exact", "prefix", "suffix",
    "body", "motivation", "tags", "creator", "author", "created", "modified", "revision",
    "status", "reason",
)
#: Columns of the current state (``annotations``), and those a later revision changes.
_CURRENT = (
    "id", "uuid", "document", "layer", "reply_to", "start", "end", "exact", "prefix", "suffix",
    "body", "motivation", "tags", "creator", "author", "created", "modified", "modified_us",
    "revision", "status", "reason",
)
_CURRENT_UPDATED = (
    "start", "end", "exact", "prefix", "suffix", "body", "motivation", "tags", "author",
    "modified", "modified_us", "revision", "status", "reason",
)


def _quoted(column: str) -> str:
    return f'"{column}"'


_SELECT = (
    'a.{id}, a.uuid, a.document, l.name, a.reply_to, a.start, a."end", a.exact, a.prefix, '
    "a.suffix, a.body, a.motivation, a.tags, a.creator, a.author, a.created, a.modified, "
    "a.revision, a.status, a.reason"
)
_COLOUR = re.compile(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?|[a-zA-Z]{1,32}")


@dataclass
class Span:
    """What the user gave to place an annotation: offsets, or a quote with context."""

    start: int | None = None
    end: int | None = None
    quote: str | None = None
    prefix: str | None = None
    suffix: str | None = None

    @property
    def given(self) -> bool:
        return self.start is not None or self.end is not None or self.quote is not None

    def resolve(self, text: str, document: int) -> anchoring.Anchor:
        if self.quote is not None:
            if self.start is not None or self.end is not None:
                raise InvalidInput("give either --start/--end or --quote, not both")
            try:
                return anchoring.find_quote(text, self.quote, self.prefix, self.suffix)
            except StetError as exc:
                raise type(exc)(f"document {document}: {exc}") from None
        if self.prefix is not None or self.suffix is not None:
            raise InvalidInput("--prefix and --suffix go with --quote")
        if self.start is None or self.end is None:
            raise InvalidInput("give both --start and --end (or --quote)")
        try:
            return anchoring.anchor(text, self.start, self.end)
        except StetError as exc:
            raise type(exc)(f"document {document}: {exc}") from None


# -- layers -----------------------------------------------------------------------------


def layers(conn) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT l.id, l.name, l.description, l.colour, l.created_by, l.created, "
        "(SELECT count(*) FROM annotations a WHERE a.layer = l.id AND a.status = 'active') "
        "FROM layers l ORDER BY l.id"
    )
    keys = ("id", "name", "description", "colour", "created_by", "created", "annotations")
    return [dict(zip(keys, row)) for row in rows]


def add_layer(conn, chain: Chain, name: str, *, by: str, description: str | None = None,
              colour: str | None = None) -> dict[str, Any]:
    """Create a layer (an event); an existing name is an error."""
    name = check_layer_name(name)
    if colour is not None and not _COLOUR.fullmatch(colour):
        raise InvalidInput(f"colour {colour!r}: give #rgb, #rrggbb or a CSS colour name")
    if conn.execute("SELECT 1 FROM layers WHERE name = ?", (name,)).fetchone():
        raise InvalidInput(f"layer {name!r} already exists")
    time = timeutil.iso(timeutil.now())
    cursor = conn.execute(
        "INSERT INTO layers (name, description, colour, created_by, created) VALUES (?, ?, ?, ?, ?)",
        (name, description, colour, by, time),
    )
    record = {"id": cursor.lastrowid, "name": name, "description": description,
              "colour": colour, "created_by": by, "created": time}
    chain.append(time=time, actor=by, action="layer-add", subject=f"layer:{name}",
                 details={k: v for k, v in record.items() if k not in ("created_by", "created")})
    return record


def check_layer_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a layer needs a name")
    if name != name.strip() or any(c in name for c in "\t\n\r"):
        raise InvalidInput(f"layer name {name!r}: no leading or trailing space, tab or newline")
    return name


def layer_id(conn, chain: Chain | None, name: str, *, by: str, create: bool = True) -> int:
    """The id of a layer by name, created (with its event) on first use."""
    row = conn.execute("SELECT id FROM layers WHERE name = ?", (name,)).fetchone()
    if row:
        return row[0]
    if not create or chain is None:
        raise NotFound(f"no layer {name!r}")
    return add_layer(conn, chain, name, by=by)["id"]


# -- writing ----------------------------------------------------------------------------


def annotate(conn, chain: Chain, document: int, *, layer: str, body: str = "", by: str,
             span: Span | None = None, motivation: str | None = None,
             tags: Iterable[str] = (), reply_to: int | None = None) -> dict[str, Any]:
    """Create an annotation (revision 1) on a document's text; returns its JSON."""
    span = span or Span()
    parent = None
    if reply_to is not None:
        parent = get(conn, reply_to)
        if parent["document"] != document:
            raise InvalidInput(
                f"annotation {reply_to} is on document {parent['document']}, not {document}"
            )
    elif not span.given:
        raise InvalidInput("an annotation needs a span (--start/--end or --quote); "
                           "only a reply (--reply-to) may have none")
    motivation = check_motivation(motivation or ("replying" if parent else "commenting"))
    anchor = span.resolve(document_text(conn, document), document) if span.given else None
    layer_number = layer_id(conn, chain, check_layer_name(layer), by=by)
    number = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0]
    moment = timeutil.now()
    now, now_us = timeutil.iso(moment), timeutil.micros(moment)
    row = _row(annotation=number, revision=1, uuid=str(uuid_module.uuid4()), document=document,
               layer=layer_number, reply_to=reply_to, anchor=anchor, body=body,
               motivation=motivation, tags=check_tags(tags), creator=by, author=by,
               created=now, modified=now, modified_us=now_us, status="active", reason=None)
    return _write(conn, chain, row, action="annotate", actor=by)


def revise(conn, chain: Chain, annotation: int, *, by: str, body: str | None = None,
           span: Span | None = None, tags: Iterable[str] | None = None,
           motivation: str | None = None) -> dict[str, Any]:
    """Append a revision: what is given changes, the rest is kept."""
    span = span or Span()
    if body is None and not span.given and tags is None and motivation is None:
        raise InvalidInput("nothing to revise: give --body, --start/--end, --quote, --tag "
                           "or --motivation")
    last = _last_revision(conn, annotation)
    if last["status"] == "retracted":
        raise InvalidInput(f"annotation {annotation} is retracted; it cannot be revised")
    if span.given:
        anchor = span.resolve(document_text(conn, last["document"]), last["document"])
        last.update(start=anchor.start, end=anchor.end, exact=anchor.exact,
                    prefix=anchor.prefix, suffix=anchor.suffix)
    if body is not None:
        last["body"] = body
    if tags is not None:
        last["tags"] = check_tags(tags)
    if motivation is not None:
        last["motivation"] = check_motivation(motivation)
    return _next_revision(conn, chain, last, by=by, status="active", reason=None,
                          action="revise")


def retract(conn, chain: Chain, annotation: int, *, by: str,
            reason: str | None = None) -> dict[str, Any]:
    """Append a tombstone revision: the annotation is no longer current, its history stays."""
    last = _last_revision(conn, annotation)
    if last["status"] == "retracted":
        raise InvalidInput(f"annotation {annotation} is already retracted")
    return _next_revision(conn, chain, last, by=by, status="retracted", reason=reason,
                          action="retract")


def _next_revision(conn, chain, last, *, by, status, reason, action) -> dict[str, Any]:
    moment = timeutil.now()
    now_us = max(timeutil.micros(moment), last["modified_us"])  # never before the last one
    last.update(revision=last["revision"] + 1, author=by, modified=timeutil.from_micros(now_us),
                modified_us=now_us, status=status, reason=reason)
    return _write(conn, chain, tuple(last[c] for c in REVISION_COLUMNS), action=action, actor=by)


def _last_revision(conn, annotation: int) -> dict[str, Any]:
    cols = ", ".join(f'"{c}"' for c in REVISION_COLUMNS)
    row = conn.execute(
        f"SELECT {cols} FROM annotation_revisions WHERE annotation = ? "
        "ORDER BY revision DESC LIMIT 1", (annotation,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no annotation {annotation}")
    return dict(zip(REVISION_COLUMNS, row))


def _row(*, anchor: anchoring.Anchor | None, **values) -> tuple:
    if anchor is not None:
        values.update(start=anchor.start, end=anchor.end, exact=anchor.exact,
                      prefix=anchor.prefix, suffix=anchor.suffix)
    else:
        values.update(start=None, end=None, exact=None, prefix=None, suffix=None)
    return tuple(values[c] for c in REVISION_COLUMNS)


def _write(conn, chain: Chain, row: tuple, *, action: str, actor: str) -> dict[str, Any]:
    conn.execute(INSERT_REVISION, row)
    record = get(conn, row[0])
    chain.append(time=record["modified"], actor=actor, action=action,
                 subject=f"annotation:{record['id']}", document=record["document"],
                 details=event_details(dict(zip(REVISION_COLUMNS, row))))
    return record


def event_details(revision: dict[str, Any]) -> dict[str, Any]:
    """What an event records of a revision: its identity and the hash of all of it."""
    return {
        "uuid": revision["uuid"], "revision": revision["revision"],
        "status": revision["status"], "start": revision["start"], "end": revision["end"],
        "revision_sha256": sha256_json({c: revision[c] for c in REVISION_COLUMNS
                                        if c not in ("annotation", "layer")}),
    }


def rows_digest(rows: Iterable[tuple]) -> tuple[int, str]:
    """How many revision rows (values in :data:`REVISION_COLUMNS` order), and the SHA-256 of
    them all: each row as a JSON array (orjson: no spaces, UTF-8 kept) and a newline.

    An import records this for the rows it wrote (ids ``first`` to ``last``) in its event,
    and ``stet verify`` recomputes it from the table (:func:`revisions_digest`): a bulk import
    has one event per file, not one per revision, and every row is still held to the chain."""
    digest = hashlib.sha256()
    count = 0
    for row in rows:
        digest.update(orjson.dumps(list(row)))
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def revisions_digest(conn, first: int, last: int) -> tuple[int, str]:
    """:func:`rows_digest` of the revision rows with ids from ``first`` to ``last``."""
    cols = ", ".join(f'"{c}"' for c in REVISION_COLUMNS)
    return rows_digest(conn.execute(
        f"SELECT {cols} FROM annotation_revisions WHERE id BETWEEN ? AND ? ORDER BY id",
        (first, last)))


def check_motivation(motivation: str) -> str:
    if motivation not in _MOTIVATIONS:
        raise InvalidInput(f"unknown motivation {motivation!r}: use one of "
                           + ", ".join(MOTIVATIONS))
    return motivation


def check_tags(tags: Iterable[str]) -> str:
    """Tags as the stored JSON array; each a non-empty string, duplicates dropped."""
    if not tags:
        return "[]"
    seen: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidInput("a tag must be a non-empty string")
        if tag not in seen:
            seen.append(tag)
    return orjson.dumps(seen).decode()


def document_text(conn, document: int) -> str:
    row = conn.execute("SELECT text FROM texts WHERE document = ?", (document,)).fetchone()
    if row is None:
        raise NotFound(f"document {document} has no text")
    return row[0]


# -- reading ----------------------------------------------------------------------------


def _record(row) -> dict[str, Any]:
    record = dict(zip(FIELDS, row))
    record["tags"] = json.loads(record["tags"])
    return record


def get(conn, annotation: int) -> dict[str, Any]:
    """An annotation's current state (retracted or not)."""
    row = conn.execute(
        f"SELECT {_SELECT.format(id='id')} FROM annotations a JOIN layers l ON l.id = a.layer "
        "WHERE a.id = ?", (annotation,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no annotation {annotation}")
    return _record(row)


#: The import events' ``rows`` ranges (read once: there are few), and who imported a revision
#: row: the actor of the import event whose range holds it.
_IMPORTS = (
    "WITH imports AS MATERIALIZED (SELECT actor, json_extract(details, '$.rows.first') AS first, "
    "json_extract(details, '$.rows.last') AS last FROM events WHERE action = 'import' "
    "AND json_type(details, '$.rows') = 'object') "
)
_IMPORTED_BY = "(SELECT i.actor FROM imports i WHERE a.id BETWEEN i.first AND i.last)"


def history(conn, annotation: int) -> list[dict[str, Any]]:
    """Every revision of an annotation, oldest first; ``imported_by`` is who imported a
    revision (the actor of the ``import`` event that holds its row), None if not imported."""
    rows = conn.execute(
        f"{_IMPORTS}SELECT {_SELECT.format(id='annotation')}, {_IMPORTED_BY} "
        "FROM annotation_revisions a "
        "JOIN layers l ON l.id = a.layer WHERE a.annotation = ? ORDER BY a.revision",
        (annotation,),
    ).fetchall()
    if not rows:
        raise NotFound(f"no annotation {annotation}")
    records = []
    for row in rows:
        record = _record(row[:-1])
        record["imported_by"] = row[-1]
        records.append(record)
    return records


def parse_overlap(value: str) -> tuple[int, int]:
    """``N:M`` with integers N < M."""
    try:
        low, high = (int(part) for part in value.split(":"))
    except ValueError:
        raise InvalidInput(f"--overlapping {value!r}: give N:M, two integers") from None
    if not low < high:
        raise InvalidInput(f"--overlapping {value!r}: N must be less than M")
    return low, high


def query(conn, *, document: int | None = None, layer: str | None = None,
          author: str | None = None, at: str | int | None = None,
          overlapping: tuple[int, int] | None = None,
          include_retracted: bool = False) -> list[dict[str, Any]]:
    """Annotations now (from ``annotations``) or at a past instant (from the revisions).

    ``overlapping=(n, m)`` selects spans with ``start < m and n < end`` (half-open);
    ``author`` matches the creator; ``at`` is an ISO 8601 instant or microseconds.
    """
    where, params = [], []
    if document is not None:
        where.append("a.document = ?")
        params.append(document)
    if overlapping is not None:
        where.append('a.start < ? AND a."end" > ?')
        params += [overlapping[1], overlapping[0]]
    if layer is not None:
        row = conn.execute("SELECT id FROM layers WHERE name = ?", (layer,)).fetchone()
        if row is None:
            raise NotFound(f"no layer {layer!r}")
        where.append("a.layer = ?")
        params.append(row[0])
    if author is not None:
        where.append("a.creator = ?")
        params.append(author)
    if not include_retracted:
        where.append("a.status = 'active'")
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    if at is None:
        sql = (f"SELECT {_SELECT.format(id='id')} FROM annotations a "
               f"JOIN layers l ON l.id = a.layer{condition} ORDER BY a.document, a.start, a.id")
        return [_record(row) for row in conn.execute(sql, params)]
    at_us = at if isinstance(at, int) else timeutil.parse_micros(at)
    inner_where = "modified_us <= ?" + (" AND document = ?" if document is not None else "")
    inner_params = [at_us] + ([document] if document is not None else [])
    # SQLite takes the bare columns of a max() aggregate from the row holding the maximum:
    # the latest revision of each annotation at that instant.
    sql = (
        f"SELECT {_SELECT.format(id='annotation')} FROM ("
        "SELECT *, max(revision) FROM annotation_revisions "
        f"WHERE {inner_where} GROUP BY annotation) a JOIN layers l ON l.id = a.layer"
        f"{condition} ORDER BY a.document, a.start, a.annotation"
    )
    return [_record(row) for row in conn.execute(sql, inner_params + params)]


# -- bulk import ------------------------------------------------------------------------


def parsed_batches(items: Iterable[tuple[str, dict[str, Any]]], parse,
                   size: int) -> Iterable[list[tuple[str, dict[str, Any]]]]:
    """``parse`` each ``(where, item)``, in lists of ``size``; the first malformed item raises
    :class:`InvalidInput` naming where it is."""
    batch: list[tuple[str, dict[str, Any]]] = []
    for where, item in items:
        try:
            batch.append((where, parse(item)))
        except StetError as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_NO_SPAN = (None,) * 5

#: How far in the future an imported time (``created`` or ``modified``) may lie: the clocks
#: of the archive that wrote a file and of this one may disagree by this much, no more. A
#: revision dated later is refused: ``revise`` never dates a revision before the last one,
#: so one revision from the future would date every later revision (and its event) there,
#: and hide them all from ``--at``.
CLOCK_SKEW_MINUTES = 5
CLOCK_SKEW_US = CLOCK_SKEW_MINUTES * 60 * 1_000_000

#: What an import compares of a stored revision with the file's, when it meets an IRI it
#: holds (see :meth:`Importer._same`).
_COMPARED = ("body, author, modified_us, status, motivation, reason, creator, created, "
             'start, "end", exact, tags, reply_to, layer, document')
#: An import's lookup of annotations by uuid: what it needs to write (``Importer.known``),
#: then the current state's revision number and :data:`_COMPARED`.
_LOOKUP = ("SELECT uuid, id, revision, document, modified_us, layer, creator, created, "
           f"reply_to, revision, {_COMPARED} FROM annotations WHERE uuid IN ({{}})")
_STORED_REVISIONS = (f"SELECT annotation, revision, {_COMPARED} FROM annotation_revisions "
                     "WHERE annotation IN ({})")


class Importer:
    """Writes parsed W3C annotations (see :func:`stet.w3c.parse`) into the archive.

    Inside the caller's write transaction: rows go in with ``executemany`` in batches,
    documents, layers and known annotations are looked up once and cached. Idempotent by
    IRI: an annotation (or, from a --history export, a revision) that the archive already
    has is skipped, but compared with what the archive holds (a revision with the same
    number; for a current-state export, any revision of the annotation): the counts name
    how many differ (``conflicts``) and the first one's IRI (``first_conflict``); the
    archive's record is kept. Every span is checked against the text here, in Python,
    before insert. Imported times may not lie in the future (beyond :data:`CLOCK_SKEW_MINUTES`),
    a revision is not dated before the one it follows nor before its annotation's creation,
    and a first revision is not a retraction.
    The per-row current-state triggers are dropped at the first insert and :meth:`finish`
    writes the current state set-based and creates them again: call it before committing.
    """

    BATCH = 5000

    def __init__(self, conn, chain: Chain, *, by: str) -> None:
        self.conn, self.chain, self.by = conn, chain, by
        self.next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0]
        self.first_id = self.next_id  # annotations numbered from here are new in this import
        self.before: int | None = None  # the last revision row before this import wrote
        self.revised_existing = False  # a new revision of an annotation the archive had
        self.documents: dict[str, tuple[int, str]] = {}
        self.layers: dict[str, int] = {}
        self.tags: dict[tuple, str] = {}  # tags as given -> as stored (checked once)
        # uuid -> [id, last revision, document, modified_us, layer, creator, created, reply_to]
        self.known: dict[str, list] = {}
        # uuid -> (revision, _COMPARED) of the current state, for the batch that looked it up
        self.current: dict[str, tuple] = {}
        self.document_ids: dict[str, int | None] = {}  # SHA-256 -> document, for comparing
        self.written = 0  # revision rows the current file wrote, and their rows_digest:
        self.digest = hashlib.sha256()  # computed as they go in (see written_rows)
        moment = timeutil.now()
        self.now = timeutil.iso(moment)
        self.latest_us = timeutil.micros(moment) + CLOCK_SKEW_US  # no time after this

    def run(self, items: Iterable[tuple[str, dict[str, Any]]], parse) -> dict[str, int]:
        """Import ``(where, W3C annotation)`` pairs; return counts of what was done."""
        return self.run_batches(parsed_batches(items, parse, self.BATCH))

    def run_batches(self, batches: Iterable[list[tuple[str, dict[str, Any]]]]) -> dict[str, int]:
        """Import batches of ``(where, parsed annotation)`` pairs, in order (they may come
        from a worker process: :func:`stet.w3c.parse_in_worker`)."""
        counts = {"annotations": 0, "revisions": 0, "skipped": 0, "conflicts": 0}
        self.written, self.digest = 0, hashlib.sha256()
        first: list[str] = []
        for batch in batches:
            self._batch(batch, counts, first)
        if first:
            counts["first_conflict"] = first[0]
        else:
            del counts["conflicts"]
        return counts

    def _batch(self, batch, counts, first_conflict: list[str]) -> None:
        self.current = {}
        self._lookup({p["uuid"] for _, p in batch} | {p["parent"] for _, p in batch if p["parent"]})
        rows = []
        skipped = []
        for where, parsed in batch:
            try:
                row = self._row(parsed)
            except StetError as exc:
                raise InvalidInput(f"{where}: {exc}") from None
            if row is None:
                skipped.append(parsed)
                continue
            rows.append(row)
            counts["revisions"] += 1
            counts["annotations"] += row[1] == 1
        if rows:
            if self.before is None:
                self._suspend_current_state()
            self.conn.executemany(INSERT_REVISION, rows)
            # rows_digest of what went in: the same bytes (a tuple is a JSON array too), in
            # one join per batch, without reading the rows back
            self.digest.update(b"\n".join(map(orjson.dumps, rows)) + b"\n")
            self.written += len(rows)
        if skipped:  # after the insert: the stored revision may be one this batch wrote
            counts["skipped"] += len(skipped)
            for parsed in self._conflicts(skipped):
                counts["conflicts"] += 1
                if not first_conflict:
                    first_conflict.append(parsed["iri"])

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

    def _conflicts(self, skipped: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """The skipped annotations (already here by IRI) whose content differs from every
        stored revision they could be: the one with the same number (a revision of a
        --history export), or any revision of the annotation (a current-state export is a
        snapshot of one of them). The stored revisions are read in batches."""
        rest = []
        for p in skipped:  # most often the current state, read with the lookup by uuid
            current = self.current.get(p["uuid"])
            if current is None or (p["revision"] or current[0]) != current[0] \
                    or not self._same(p, current[1:]):
                rest.append(p)
        if not rest:
            return
        ids = list({self.known[p["uuid"]][0] for p in rest})
        stored: dict[int, dict[int, tuple]] = {}
        for offset in range(0, len(ids), 500):
            part = ids[offset:offset + 500]
            for row in self.conn.execute(_STORED_REVISIONS.format(", ".join("?" * len(part))),
                                         part):
                stored.setdefault(row[0], {})[row[1]] = row[2:]
        for p in rest:
            revisions = stored.get(self.known[p["uuid"]][0], {})
            if p["revision"] is not None:
                candidates = [revisions.get(p["revision"])]
            else:
                candidates = list(revisions.values())
            if not any(s is not None and self._same(p, s) for s in candidates):
                yield p

    def _same(self, p: dict[str, Any], s: tuple) -> bool:
        """Whether a parsed annotation says what a stored revision says (``s``: the columns of
        :data:`_COMPARED`). What the file does not give (a position, a quote, a document) is
        not compared."""
        start, end, exact = p["start"], p["end"], p["exact"]
        if (p["body"], p["author"], p["modified_us"], p["status"], p["motivation"], p["reason"],
                p["creator"], p["created"], s[8] if start is None else start,
                s[9] if end is None else end, s[10] if exact is None else exact) != s[:11]:
            return False
        tags = p["tags"]
        if tags:
            tags = self.tags.get(tuple(tags)) or orjson.dumps(list(dict.fromkeys(tags))).decode()
        if (tags or "[]") != s[11]:
            return False
        parent = self.known.get(p["parent"]) if p["parent"] is not None else None
        return ((parent[0] if parent is not None else None) == s[12]
                and (self.layers.get(p["layer"]) or self._existing_layer(p["layer"])) == s[13]
                and (p["source"] is None or self._document_id(p["source"]) == s[14]))

    def _existing_layer(self, name: str) -> int | None:
        row = self.conn.execute("SELECT id FROM layers WHERE name = ?", (name,)).fetchone()
        if row is not None:
            self.layers[name] = row[0]
        return row[0] if row else None

    def _document_id(self, sha: str) -> int | None:
        if sha in self.documents:
            return self.documents[sha][0]
        if sha not in self.document_ids:
            row = self.conn.execute("SELECT id FROM documents WHERE sha256 = ?", (sha,)).fetchone()
            self.document_ids[sha] = row[0] if row else None
        return self.document_ids[sha]

    def _suspend_current_state(self) -> None:
        """Drop the per-row current-state triggers for the rest of this transaction;
        :meth:`finish` writes the current state set-based and creates them again."""
        self.before = self.conn.execute(
            "SELECT coalesce(max(id), 0) FROM annotation_revisions").fetchone()[0]
        for name in CURRENT_STATE_TRIGGER_NAMES:
            self.conn.execute(f"DROP TRIGGER {name}")

    def finish(self) -> None:
        """Bring ``annotations`` up to date with the revisions this import wrote and restore
        the triggers, in the same transaction. Call once after the last :meth:`run`; if
        anything failed, the caller rolls back instead (which restores the triggers too)."""
        if self.before is None:
            return
        latest = (
            "FROM annotation_revisions r WHERE r.id > :before AND r.revision = "
            "(SELECT max(revision) FROM annotation_revisions WHERE annotation = r.annotation)"
        )
        params = {"before": self.before, "first": self.first_id}
        # New revisions of annotations the archive had: their latest is the current state.
        # (Skipped when there are none: the statement scans every new revision, 1.3 s at 1M.)
        if self.revised_existing:
            self.conn.execute(
                "UPDATE annotations SET "
                + ", ".join(f"{_quoted(c)} = r.{_quoted(c)}" for c in _CURRENT_UPDATED)
                + f" {latest} AND r.annotation = annotations.id AND annotations.id < :first",
                params,
            )
        # Annotations this import created: the latest of their revisions, in id order.
        self.conn.execute(
            f"INSERT INTO annotations ({', '.join(map(_quoted, _CURRENT))}) "
            f"SELECT r.annotation, {', '.join('r.' + _quoted(c) for c in _CURRENT[1:])} "
            f"{latest} AND r.annotation >= :first ORDER BY r.annotation",
            params,
        )
        statement = ""
        for line in CURRENT_STATE_TRIGGERS.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                self.conn.execute(statement)
                statement = ""
        self.before = None

    def _lookup(self, uuids: set[str]) -> None:
        if self.first_id == 1:
            return  # the archive had no annotations: only this import's are known
        missing = [u for u in uuids if u not in self.known]
        for offset in range(0, len(missing), 500):
            part = missing[offset:offset + 500]
            for row in self.conn.execute(_LOOKUP.format(", ".join("?" * len(part))), part):
                self.known[row[0]] = list(row[1:9])
                self.current[row[0]] = row[9:]

    def _row(self, p: dict[str, Any]) -> tuple | None:
        uuid = p["uuid"]
        state = self.known.get(uuid)
        revision = p["revision"]
        if state is not None and (revision is None or revision <= state[1]):
            return None  # already here: idempotent by IRI
        if revision is None:
            revision = 1
        if state is None and revision != 1:
            raise InvalidInput(f"revision {revision} of urn:uuid:{p['uuid']}: "
                               "the revisions before it are neither in the archive nor the file")
        if state is not None and revision != state[1] + 1:
            raise InvalidInput(f"revision {revision} of urn:uuid:{p['uuid']}: the archive has "
                               f"revisions up to {state[1]} only")
        if p["modified_us"] > self.latest_us or p["created_us"] > self.latest_us:
            raise InvalidInput(self._future(p, revision))
        if p["modified_us"] < p["created_us"]:
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} is dated {p['modified']}, "
                               f"before its annotation was created ({p['created']})")
        if revision == 1 and p["status"] == "retracted":
            raise InvalidInput(f"revision 1 of urn:uuid:{uuid} is a retraction: an annotation "
                               "cannot begin retracted")
        reply_to = document = None
        if p["parent"] is not None:
            parent = self.known.get(p["parent"])
            if parent is None:
                raise InvalidInput(f"replies to urn:uuid:{p['parent']}, which is neither in "
                                   "the archive nor earlier in the file")
            reply_to, document = parent[0], parent[2]
        span = _NO_SPAN
        if p["source"] is not None:
            doc, text = self.documents.get(p["source"]) or self._document(p["source"])
            if document is not None and doc != document:
                raise InvalidInput("a reply's span must be on its parent's document")
            document = doc
            start, end, exact = p["start"], p["end"], p["exact"]
            if type(start) is int and type(end) is int and 0 <= start < end <= len(text) \
                    and exact == text[start:end]:  # the common case: the quote is there
                span = (start, end, exact, text[max(0, start - anchoring.CONTEXT):start],
                        text[end:end + anchoring.CONTEXT])
            else:  # no position, a bad one or another quote: checked and found as it may be
                span = tuple(anchoring.reanchor(text, start, end, exact, p["prefix"],
                                                p["suffix"]))
        layer = self.layers.get(p["layer"]) or self._layer(p["layer"])
        if state is None:
            number = self.next_id
            self.next_id += 1
            state = self.known[uuid] = [number, 0, document, p["modified_us"], layer,
                                        p["creator"], p["created"], reply_to]
        elif state[2:3] + state[4:] != [document, layer, p["creator"], p["created"], reply_to]:
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} does not keep its "
                               "annotation's document, layer, creator, created or reply_to")
        elif p["modified_us"] < state[3]:
            raise InvalidInput(f"revision {revision} of urn:uuid:{uuid} is dated before "
                               "the revision it follows")
        state[1], state[3] = revision, p["modified_us"]
        if state[0] < self.first_id:
            self.revised_existing = True
        tags = p["tags"]
        key = tuple(tags)
        stored_tags = self.tags.get(key)
        if stored_tags is None:
            stored_tags = self.tags[key] = check_tags(tags)
        motivation = p["motivation"]
        if motivation not in _MOTIVATIONS:
            check_motivation(motivation)
        return (state[0], revision, uuid, document, layer, reply_to, *span, p["body"],
                motivation, stored_tags, p["creator"], p["author"], p["created"], p["modified"],
                p["modified_us"], p["status"], p["reason"])

    def _future(self, p: dict[str, Any], revision: int) -> str:
        skew = (f"in the future (this archive's clock says {self.now}; "
                f"{CLOCK_SKEW_MINUTES} minutes of clock skew are allowed)")
        if p["created_us"] > self.latest_us:
            return f"urn:uuid:{p['uuid']} was created {p['created']}, {skew}"
        return f"revision {revision} of urn:uuid:{p['uuid']} is dated {p['modified']}, {skew}"

    def _document(self, sha: str) -> tuple[int, str]:
        found = self.documents.get(sha)
        if found is None:
            row = self.conn.execute(
                "SELECT d.id, t.text FROM documents d JOIN texts t ON t.document = d.id "
                "WHERE d.sha256 = ?", (sha,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no document with SHA-256 {sha} in this archive")
            found = self.documents[sha] = (row[0], row[1])
        return found

    def _layer(self, name: str) -> int:
        found = self.layers.get(name)
        if found is None:
            found = self.layers[name] = layer_id(self.conn, self.chain, check_layer_name(name),
                                                 by=self.by)
        return found
