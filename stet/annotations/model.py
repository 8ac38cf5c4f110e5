# Over 400 lines on purpose: one concern, an annotation's revisions, written (annotate,
# revise, retract) and read (get, history, query) through the same row and record shapes.
"""Versioned span annotations: revisions, the current state and the past (layers are in
:mod:`stet.annotations.layers`).

``annotation_revisions`` is the source of truth and only ever grows: revision 1 creates an
annotation, each edit appends the next revision, a retraction appends a tombstone (status
``retracted``). ``annotations`` is the current state, one row per annotation, maintained by
triggers on every insert (a bulk import, :class:`~stet.annotations.importer.Importer`,
writes it set-based instead, in the same transaction). The state at a past instant is the
latest revision of each annotation whose ``modified_us`` is at or before it
(:func:`~stet.annotations.schema.state_at`).

Every function that writes takes the :class:`~stet.provenance.Chain` of the caller's write
transaction (``Archive.write()``) and appends its event there, so the revision and its event
commit together or not at all. :func:`query` and :func:`history` return iterators that
stream rows from the cursor.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import orjson

from .. import timeutil
from ..errors import InvalidInput, NotFound, StetError, arg
from ..hashing import sha256_json
from ..provenance import Chain
from . import anchoring
from .layers import check_layer_name, find_layer, follow, layer_id, layer_name, moves
from ..store import ANCHORINGS
from .schema import (FIELDS, INSERT_REVISION, MOTIVATIONS, REVISION_COLUMNS,
                     select, state_at)

_MOTIVATIONS = frozenset(MOTIVATIONS)
#: An annotation's JSON from the current state ``a`` (or, with ``revisions``, a revision),
#: its layer by name (from ``layers l``).
_SELECT = select("a", replace={"layer": "l.name"})
_SELECT_REVISIONS = select("a", revisions=True, replace={"layer": "l.name"})
_REVISION_LIST = ", ".join(f'"{c}"' for c in REVISION_COLUMNS)


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
                raise InvalidInput(f"give either {arg('start')}/{arg('end')} or {arg('quote')}, "
                                   "not both")
            try:
                return anchoring.find_quote(text, self.quote, self.prefix, self.suffix)
            except StetError as exc:
                raise type(exc)(f"document {document}: {exc.message}") from None
        if self.prefix is not None or self.suffix is not None:
            raise InvalidInput(f"{arg('prefix')} and {arg('suffix')} go with {arg('quote')}")
        if self.start is None or self.end is None:
            raise InvalidInput(f"give both {arg('start')} and {arg('end')} (or {arg('quote')})")
        try:
            return anchoring.anchor(text, self.start, self.end)
        except StetError as exc:
            raise type(exc)(f"document {document}: {exc.message}") from None


# -- writing ----------------------------------------------------------------------------


def annotate(conn, chain: Chain, document: int | None, *, layer: str | None, body: str = "",
             by: str, span: Span | None = None, motivation: str | None = None,
             tags: Iterable[str] = (), reply_to: int | None = None,
             warn=None, via: str | None = None) -> dict[str, Any]:
    """Create an annotation (revision 1) on a document's text; returns its JSON. ``via``:
    where the write came from (``"workbench"``), recorded in its event's details.

    A reply (``reply_to``) is on its parent's document and in its parent's layer: either
    may be left out (None), and giving another is an error. ``warn`` (a callable, or None)
    is told what the caller should know but that does not stop the annotation: a layer
    created by this call, a layer name that was renamed or merged, and an active annotation
    that already marks the same span in the same layer (with the same body, or not)."""
    span = span or Span()
    parent = None
    if reply_to is not None:
        parent = get(conn, reply_to)
        if document is None:
            document = parent["document"]
        elif parent["document"] != document:
            raise InvalidInput(
                f"annotation {reply_to} is on document {parent['document']}, not {document}"
            )
        if layer is None:
            layer = parent["layer"]
    elif not span.given:
        raise InvalidInput(f"an annotation needs a span ({arg('start')}/{arg('end')} or "
                           f"{arg('quote')}); only a reply ({arg('reply_to')}) may have none")
    if document is None:
        raise InvalidInput("an annotation needs a document (only a reply takes its parent's)")
    if layer is None:
        raise InvalidInput(f"an annotation needs a layer ({arg('layer')}; only a reply takes "
                           "its parent's)")
    motivation = check_motivation(motivation or ("replying" if parent else "commenting"))
    anchor = span.resolve(document_text(conn, document), document) if span.given else None
    check_layer_name(layer)
    if parent is not None:
        found = find_layer(conn, layer)
        parent_layer = conn.execute("SELECT layer FROM annotations WHERE id = ?",
                                    (reply_to,)).fetchone()[0]
        if found is None or found[0] != parent_layer:
            raise InvalidInput(f"annotation {reply_to} is in layer {parent['layer']!r}, not "
                               f"{layer!r}: a reply is in its parent's layer")
        layer_number = parent_layer
    else:
        layer_number = layer_id(conn, chain, layer, by=by, warn=warn)
    if anchor is not None and warn is not None:
        for same in _same_span(conn, document, layer_number, anchor, body):
            warn(same)
    number = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0]
    moment = timeutil.now()
    now, now_us = timeutil.iso(moment), timeutil.micros(moment)
    row = _row(annotation=number, revision=1, uuid=str(uuid_module.uuid4()), document=document,
               layer=layer_number, reply_to=reply_to, anchor=anchor, body=body,
               motivation=motivation, tags=check_tags(tags), creator=by, author=by,
               created=now, modified=now, modified_us=now_us, status="active", reason=None)
    return _write(conn, chain, row, action="annotate", actor=by, via=via)


def _same_span(conn, document: int, layer: int, anchor: anchoring.Anchor,
               body: str) -> Iterator[str]:
    """What to say of active annotations that already mark this span in this layer: the
    first with the same body, else the first with another."""
    rows = conn.execute(
        'SELECT a.id, l.name, a.body = ? FROM annotations a JOIN layers l ON l.id = a.layer '
        'WHERE a.document = ? AND a.start = ? AND a."end" = ? AND a.layer = ? '
        "AND a.status = 'active' ORDER BY a.body = ? DESC, a.id LIMIT 1",
        (body, document, anchor.start, anchor.end, layer, body)).fetchall()
    for number, name, same_body in rows:
        yield (f"annotation {number} already marks this span in layer {name!r}"
               + (" with this body" if same_body else ""))


def revise(conn, chain: Chain, annotation: int, *, by: str, body: str | None = None,
           span: Span | None = None, tags: Iterable[str] | None = None,
           motivation: str | None = None, via: str | None = None) -> dict[str, Any]:
    """Append a revision: what is given changes, the rest is kept."""
    span = span or Span()
    if body is None and not span.given and tags is None and motivation is None:
        raise InvalidInput(f"nothing to revise: give {arg('body')}, {arg('start')}/{arg('end')}, "
                           f"{arg('quote')}, {arg('tags')} or {arg('motivation')}")
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
                          action="revise", via=via)


def retract(conn, chain: Chain, annotation: int, *, by: str,
            reason: str | None = None, via: str | None = None) -> dict[str, Any]:
    """Append a tombstone revision: the annotation is no longer current, its history stays."""
    last = _last_revision(conn, annotation)
    if last["status"] == "retracted":
        raise InvalidInput(f"annotation {annotation} is already retracted")
    return _next_revision(conn, chain, last, by=by, status="retracted", reason=reason,
                          action="retract", via=via)


def _next_revision(conn, chain, last, *, by, status, reason, action, via) -> dict[str, Any]:
    moment = timeutil.now()
    now_us = max(timeutil.micros(moment), last["modified_us"])  # never before the last one
    last.update(revision=last["revision"] + 1, author=by, modified=timeutil.from_micros(now_us),
                modified_us=now_us, status=status, reason=reason)
    return _write(conn, chain, tuple(last[c] for c in REVISION_COLUMNS), action=action, actor=by,
                  via=via)


def _last_revision(conn, annotation: int) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {_REVISION_LIST} FROM annotation_revisions WHERE annotation = ? "
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


#: Keys of an annotation event's details that say how the event came about, not what the
#: revision holds: ``stet verify`` compares the rest with the revision row.
EVENT_ONLY = ("original", "via")


def _write(conn, chain: Chain, row: tuple, *, action: str, actor: str,
           via: str | None = None) -> dict[str, Any]:
    conn.execute(INSERT_REVISION, row)
    record = get(conn, row[0])
    details = event_details(dict(zip(REVISION_COLUMNS, row)))
    if via is not None:
        details["via"] = via
    chain.append(time=record["modified"], actor=actor, action=action,
                 subject=f"annotation:{record['id']}", document=record["document"],
                 details=details)
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
    return rows_digest(conn.execute(
        f"SELECT {_REVISION_LIST} FROM annotation_revisions WHERE id BETWEEN ? AND ? ORDER BY id",
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
        f"SELECT {_SELECT} FROM annotations a JOIN layers l ON l.id = a.layer "
        "WHERE a.id = ?", (annotation,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no annotation {annotation}")
    return next(with_anchoring(conn, [_record(row)]))


#: The import events' ``rows`` ranges (read once: there are few), and who imported a revision
#: row: the actor of the import event whose range holds it.
_IMPORTS = (
    "WITH imports AS MATERIALIZED (SELECT actor, json_extract(details, '$.rows.first') AS first, "
    "json_extract(details, '$.rows.last') AS last FROM events WHERE action = 'import' "
    "AND json_type(details, '$.rows') = 'object') "
)
_IMPORTED_BY = "(SELECT i.actor FROM imports i WHERE a.id BETWEEN i.first AND i.last)"


def history(conn, annotation: int) -> Iterator[dict[str, Any]]:
    """Every revision of an annotation, oldest first, streamed; ``imported_by`` is who
    imported a revision (the actor of the ``import`` event that holds its row), None if not
    imported. :class:`NotFound` (at the call) if there is no such annotation."""
    cursor = conn.execute(
        f"{_IMPORTS}SELECT {_SELECT_REVISIONS}, {_IMPORTED_BY} "
        "FROM annotation_revisions a "
        "JOIN layers l ON l.id = a.layer WHERE a.annotation = ? ORDER BY a.revision",
        (annotation,),
    )
    first = cursor.fetchone()
    if first is None:
        raise NotFound(f"no annotation {annotation}")
    return _revisions(first, cursor)


def _revisions(first, cursor) -> Iterator[dict[str, Any]]:
    for row in itertools.chain((first,), cursor):
        record = _record(row[:-1])
        record["imported_by"] = row[-1]
        yield record


def parse_overlap(value: str) -> tuple[int, int]:
    """``N:M`` with integers N < M."""
    try:
        low, high = (int(part) for part in value.split(":"))
    except ValueError:
        raise InvalidInput(f"{arg('overlapping')} {value!r}: give N:M, two integers") from None
    if not low < high:
        raise InvalidInput(f"{arg('overlapping')} {value!r}: N must be less than M")
    return low, high


def query(conn, *, document: int | None = None, layer: str | None = None,
          author: str | None = None, at: str | int | None = None,
          overlapping: tuple[int, int] | None = None,
          include_retracted: bool = False, anchoring: str | None = None) -> Iterator[dict[str, Any]]:
    """Annotations now (from ``annotations``) or at a past instant (from the revisions,
    :func:`~stet.annotations.schema.state_at`), streamed in document and span order, each
    reply right after its parent (threaded, at any depth: :func:`threaded`).

    ``overlapping=(n, m)`` selects spans with ``start < m and n < end`` (half-open);
    ``author`` matches the creator; ``at`` is an ISO 8601 instant or microseconds. A layer
    or instant that does not exist or parse is refused at the call. A layer renamed or
    merged away selects the layer its annotations went to; at a past instant, each
    annotation is in the layer it was in then (the renames and merges made by then).
    ``anchoring`` (``exact``, ``fuzzy``, ``orphaned``): only annotations carried to a newer
    version (:mod:`stet.annotations.versions`) that were placed so, ``orphaned`` those still
    without a span. A carried annotation's record has ``carried_from``, ``anchoring`` and
    ``score`` (None for one that was not carried)."""
    where, params = [], []
    at_us = None if at is None else at if isinstance(at, int) else timeutil.parse_micros(at)
    moved = moves(conn) if at_us is not None or layer is not None else {}
    if at_us is not None:  # the moves made by then
        until = timeutil.from_micros(at_us)
        times = dict(conn.execute(
            "SELECT seq, time FROM events WHERE seq IN (%s)" % ", ".join(
                str(m[1]) for m in moved.values())).fetchall()) if moved else {}
        moved = {k: v for k, v in moved.items() if times.get(v[1], until) <= until}
    if document is not None:
        where.append("a.document = ?")
        params.append(document)
    if overlapping is not None:
        where.append('a.start < ? AND a."end" > ?')
        params += [overlapping[1], overlapping[0]]
    if layer is not None:
        found = find_layer(conn, layer, moved=moved)
        if found is None:
            raise NotFound(f"no layer {layer!r}")
        # now, the current state holds each annotation's layer; then, a revision holds the
        # layer it was made in, and every layer that had moved to the one asked for counts
        wanted = [found[0]] if at_us is None else \
            [found[0], *(k for k in moved if follow(moved, k) == found[0])]
        where.append(f"a.layer IN ({', '.join('?' * len(wanted))})")
        params += wanted
    if author is not None:
        where.append("a.creator = ?")
        params.append(author)
    if anchoring is not None:
        if anchoring not in ANCHORINGS:
            raise InvalidInput(f"unknown anchoring {anchoring!r}: one of {', '.join(ANCHORINGS)}")
        column = "a.id" if at_us is None else "a.annotation"
        where.append(f"{column} IN (SELECT annotation FROM anchoring_state WHERE anchoring = ?)"
                     + (" AND a.start IS NULL" if anchoring == "orphaned" else ""))
        params.append(anchoring)
    if not include_retracted:
        where.append("a.status = 'active'")
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    if at_us is None:
        sql = (f"SELECT {_SELECT} FROM annotations a "
               f"JOIN layers l ON l.id = a.layer{condition} ORDER BY a.document, a.start, a.id")
        records = map(_record, conn.execute(sql, params))
    else:
        inner = state_at("?", document="?" if document is not None else None)
        params = [at_us, *([document] if document is not None else []), *params]
        sql = (f"SELECT {_SELECT_REVISIONS}, a.layer FROM ({inner}) a "
               f"JOIN layers l ON l.id = a.layer{condition} "
               "ORDER BY a.document, a.start, a.annotation")
        records = _moved(conn, conn.execute(sql, params), moved)
    return with_anchoring(conn, threaded(conn, records))


#: What a record of an annotation that was not carried from an older version says of it.
NOT_CARRIED = {"carried_from": None, "anchoring": None, "score": None}


def with_anchoring(conn, records: Iterable[dict[str, Any]],
                   batch: int = 500) -> Iterator[dict[str, Any]]:
    """The records, each with ``carried_from`` (the annotation it was carried from),
    ``anchoring`` and ``score`` (:mod:`stet.annotations.versions`), all None for an
    annotation that was not carried; looked up a batch at a time."""
    from .versions import anchoring_of

    if not _has_anchoring(conn):
        for record in records:
            record.update(NOT_CARRIED)
            yield record
        return
    pending: list[dict[str, Any]] = []
    for record in records:
        pending.append(record)
        if len(pending) >= batch:
            yield from _attach(conn, pending, anchoring_of)
            pending = []
    yield from _attach(conn, pending, anchoring_of)


def _attach(conn, records, anchoring_of) -> Iterator[dict[str, Any]]:
    found = anchoring_of(conn, (r["id"] for r in records)) if records else {}
    for record in records:
        record.update(found.get(record["id"], NOT_CARRIED))
        yield record


def _has_anchoring(conn) -> bool:
    """Whether the archive has the table (a snapshot or archive of before versions may not)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'anchoring_state'").fetchone() \
        is not None


def _moved(conn, rows, moved: dict) -> Iterator[dict[str, Any]]:
    """Records of revision rows (with the layer id last), each named by the layer its
    annotations were in, given the renames and merges ``moved``."""
    names: dict[int, str] = {}
    for row in rows:
        record = _record(row[:-1])
        if row[-1] in moved:
            target = follow(moved, row[-1])
            if target not in names:
                names[target] = layer_name(conn, target)
            record["layer"] = names[target]
        yield record


def threaded(conn, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Records in document order, each reply moved right after its parent (its siblings in
    id order, at any depth). One document's records are held at a time. A reply whose
    parent is not among them stands where its nearest annotated ancestor's span starts."""
    for _, group in itertools.groupby(records, key=lambda r: r["document"]):
        rows = list(group)
        if all(r["reply_to"] is None for r in rows):
            yield from rows
            continue
        present = {r["id"] for r in rows}
        children: dict[int, list[dict[str, Any]]] = {}
        roots = []
        for r in rows:
            if r["reply_to"] is not None and r["reply_to"] in present:
                children.setdefault(r["reply_to"], []).append(r)
            else:
                roots.append(r)

        def place(r):
            start = r["start"] if r["start"] is not None else _thread_start(conn, r["reply_to"])
            return (-1 if start is None else start, r["id"])

        roots.sort(key=place)
        stack = list(reversed(roots))
        while stack:
            r = stack.pop()
            yield r
            stack.extend(reversed(sorted(children.get(r["id"], ()), key=lambda c: c["id"])))


def _thread_start(conn, parent: int | None) -> int | None:
    """Where the span of the nearest ancestor with one starts (None if none has one)."""
    for _ in range(10_000):
        if parent is None:
            return None
        row = conn.execute("SELECT start, reply_to FROM annotations WHERE id = ?",
                           (parent,)).fetchone()
        if row is None:
            return None
        if row[0] is not None:
            return row[0]
        parent = row[1]
    return None
