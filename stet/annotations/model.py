"""Versioned span annotations: layers, revisions, the current state and the past.

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
import re
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import orjson

from .. import timeutil
from ..errors import InvalidInput, NotFound, StetError
from ..hashing import sha256_json
from ..provenance import Chain
from . import anchoring
from .schema import FIELDS, INSERT_REVISION, MOTIVATIONS, REVISION_COLUMNS, select, state_at

_MOTIVATIONS = frozenset(MOTIVATIONS)
#: An annotation's JSON from the current state ``a`` (or, with ``revisions``, a revision),
#: its layer by name (from ``layers l``).
_SELECT = select("a", replace={"layer": "l.name"})
_SELECT_REVISIONS = select("a", revisions=True, replace={"layer": "l.name"})
_REVISION_LIST = ", ".join(f'"{c}"' for c in REVISION_COLUMNS)
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
    return _record(row)


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
        raise InvalidInput(f"--overlapping {value!r}: give N:M, two integers") from None
    if not low < high:
        raise InvalidInput(f"--overlapping {value!r}: N must be less than M")
    return low, high


def query(conn, *, document: int | None = None, layer: str | None = None,
          author: str | None = None, at: str | int | None = None,
          overlapping: tuple[int, int] | None = None,
          include_retracted: bool = False) -> Iterator[dict[str, Any]]:
    """Annotations now (from ``annotations``) or at a past instant (from the revisions,
    :func:`~stet.annotations.schema.state_at`), streamed in document and span order.

    ``overlapping=(n, m)`` selects spans with ``start < m and n < end`` (half-open);
    ``author`` matches the creator; ``at`` is an ISO 8601 instant or microseconds. A layer
    or instant that does not exist or parse is refused at the call."""
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
        sql = (f"SELECT {_SELECT} FROM annotations a "
               f"JOIN layers l ON l.id = a.layer{condition} ORDER BY a.document, a.start, a.id")
    else:
        at_us = at if isinstance(at, int) else timeutil.parse_micros(at)
        inner = state_at("?", document="?" if document is not None else None)
        params = [at_us, *([document] if document is not None else []), *params]
        sql = (f"SELECT {_SELECT_REVISIONS} FROM ({inner}) a JOIN layers l ON l.id = a.layer"
               f"{condition} ORDER BY a.document, a.start, a.annotation")
    return map(_record, conn.execute(sql, params))
