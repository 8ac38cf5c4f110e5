"""Document versions: the chain of versions, and annotations carried to a newer one.

A document that ``supersedes`` another is a newer version of it (``stet ingest NEW
--supersedes DOC``). :func:`carry` carries every active annotation of the older version to
the newer one's text, each placed by :mod:`stet.annotations.reanchoring`:

- **exact**: the quote is where its position and context say;
- **fuzzy**: an approximate match of quote and context, scored 0 to 1, at or above the
  threshold;
- **orphaned**: below it: kept, with no span (``stet annotations NEW --anchoring orphaned``).

Each carried annotation is a NEW annotation on the newer version (its own id and uuid), with
the body, tags, motivation, layer, creator, author and times of the one it came from; a reply
is carried as a reply to its parent's copy, and goes where its parent went (its anchoring is
its parent's). The older version's annotations stay as they were.

The record: an ``annotation_anchoring`` row per carried annotation (``annotation``, ``origin``
= the annotation it came from, ``anchoring``, ``score``, ``event``), written before its
revision row (the database lets a revision without a span in only for a reply or an orphaned
carried annotation), and ONE ``reanchor`` event by whoever carries (``stet ingest``'s or
``stet reanchor``'s ``--by``), on the newer document, whose details give the older version
(``from``), the threshold, the counts, and, as an import does, the range and SHA-256 of the
revision rows it wrote (``rows``) and of the anchoring rows (``anchoring``): ``stet verify``
holds every one of them to it.

Carrying again (``stet reanchor NEW``) carries what was not carried yet (annotations made on
the older version since), and tries each orphan again, with the threshold given: an orphan
nobody has revised since that now places gets a revision with its span (by whoever carries)
and a new anchoring row. Nothing is carried twice, and nothing is ever dropped.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any, Iterable, Iterator

from .. import timeutil
from ..errors import InvalidInput, NotFound
from ..provenance import Chain
from ..store import ANCHORINGS
from .model import rows_digest
from .schema import INSERT_REVISION, REVISION_COLUMNS, select

#: The columns of an anchoring row that its reanchor event's digest covers, in order.
ANCHORING_COLUMNS = ("annotation", "origin", "anchoring", "score", "event")
#: Scores are kept to 4 decimals: the same in the row, the JSON and the event's digest.
SCORE_DIGITS = 4

_ORIGINS = f"SELECT {select('a', REVISION_COLUMNS, revisions=False, replace={'annotation': 'a.id'})} " \
    "FROM annotations a"


def versions(conn, document: int) -> list[dict[str, Any]]:
    """The versions of ``document`` (any member of its chain), oldest first: each with its
    id, current title, ingest time, the document it supersedes, whether it is restricted
    now, and how many annotations it holds (active) and how many were carried to it."""
    root = document
    seen = {root}
    while True:
        row = conn.execute("SELECT supersedes FROM documents WHERE id = ?", (root,)).fetchone()
        if row is None:
            raise NotFound(f"no document {document}")
        if row[0] is None or row[0] in seen:
            break
        root = row[0]
        seen.add(root)
    order: list[int] = []
    stack = [root]
    visited: set[int] = set()
    while stack:  # depth first, each version's successors in id order
        current = stack.pop()
        if current in visited:
            continue
        visited.add(current)
        order.append(current)
        successors = [r[0] for r in conn.execute(
            "SELECT id FROM documents WHERE supersedes = ? AND parent IS NULL ORDER BY id",
            (current,))]
        stack.extend(reversed(successors))
    out = []
    for number in order:
        row = conn.execute(
            "SELECT d.id, s.title, d.ingested_at, d.supersedes, s.restricted, "
            "(SELECT count(*) FROM annotations a WHERE a.document = d.id "
            " AND a.status = 'active'), "
            "(SELECT count(*) FROM anchoring_state x JOIN annotations a ON a.id = x.annotation "
            " WHERE a.document = d.id) "
            "FROM documents d JOIN document_state s ON s.document = d.id WHERE d.id = ?",
            (number,)).fetchone()
        keys = ("id", "title", "ingested_at", "supersedes", "restricted", "annotations", "carried")
        record = dict(zip(keys, row))
        record["restricted"] = bool(record["restricted"])
        out.append(record)
    return out


def anchoring_of(conn, annotations: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The anchoring now of each carried annotation among ``annotations``: ``{id:
    {"carried_from": origin, "anchoring": ..., "score": ...}}`` (absent: not carried)."""
    ids = list(annotations)
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for annotation, origin, anchoring, score in conn.execute(
                "SELECT annotation, origin, anchoring, score FROM anchoring_state "
                f"WHERE annotation IN ({', '.join('?' * len(chunk))})", chunk):
            out[annotation] = {"carried_from": origin, "anchoring": anchoring, "score": score}
    return out


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0 < threshold <= 1:
        raise InvalidInput(f"a threshold is a number above 0 and at most 1, not {threshold!r}")
    return float(threshold)


def carry(conn, chain: Chain, new: int, *, by: str, source: int | None = None,
          threshold: float | None = None) -> dict[str, Any]:
    """Carry ``source``'s active annotations (default: the document ``new`` supersedes) to
    ``new``, and try its orphans again; one ``reanchor`` event, or none when there is nothing
    to do. Returns what was done: ``from``, ``to``, ``threshold``, the counts ``exact``,
    ``fuzzy``, ``orphaned``, ``carried``, ``placed_again``, the ``event`` (or None) and the
    ``annotations`` written (each ``{"id", "carried_from", "anchoring", "score"}``)."""
    from . import reanchoring  # rapidfuzz and the diff load only when carrying

    threshold = check_threshold(reanchoring.DEFAULT_THRESHOLD if threshold is None else threshold)
    row = conn.execute("SELECT supersedes FROM documents WHERE id = ?", (new,)).fetchone()
    if row is None:
        raise NotFound(f"no document {new}")
    if source is None:
        if row[0] is None:
            raise InvalidInput(f"document {new} supersedes no document: give the older "
                               "version (--from DOC)")
        source = row[0]
    if source == new:
        raise InvalidInput(f"document {new} cannot carry annotations from itself")
    if conn.execute("SELECT 1 FROM documents WHERE id = ?", (source,)).fetchone() is None:
        raise NotFound(f"no document {source}")
    old_text, new_text = _text(conn, source), _text(conn, new)
    placer = reanchoring.Reanchorer(old_text, new_text)

    seq = chain.head()[0] + 1  # the reanchor event's: this write transaction holds the lock
    carried = {origin: copy for copy, origin in conn.execute(
        "SELECT x.annotation, x.origin FROM anchoring_state x "
        "JOIN annotations a ON a.id = x.annotation WHERE a.document = ?", (new,))}
    next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0]
    first_row = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotation_revisions"
                             ).fetchone()[0]
    first_anchoring = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM annotation_anchoring"
                                   ).fetchone()[0]
    written: list[dict[str, Any]] = []
    counts = dict.fromkeys(ANCHORINGS, 0)
    placed_again = 0
    placed: dict[int, tuple[str, float]] = {}  # copy id -> (anchoring, score), this carry's

    for origin in _origins(conn, source):
        if origin["annotation"] in carried:
            continue
        number, next_id = next_id, next_id + 1
        parent = origin["reply_to"]
        if parent is not None:
            copy_parent = carried.get(parent)
            if copy_parent is not None:  # it goes where its parent went
                placement = None
                kind, score = placed.get(copy_parent) or _anchoring_now(conn, copy_parent)
            else:  # its parent was retracted, or is not on this version: kept, alone
                kind, score, placement = "orphaned", 0.0, None
        elif origin["start"] is None:  # an orphan of an older version stays one
            kind, score, placement = "orphaned", 0.0, None
        else:
            placement = placer.place(origin["start"], origin["end"], origin["exact"],
                                     origin["prefix"], origin["suffix"], threshold=threshold)
            kind, score = placement.anchoring, placement.score
            if kind == "orphaned":
                placement = None
        score = round(float(score), SCORE_DIGITS)
        _anchoring_row(conn, number, origin["annotation"], kind, score, seq)
        revision = {
            **origin, "annotation": number, "revision": 1, "uuid": str(uuid_module.uuid4()),
            "document": new, "reply_to": carried.get(parent) if parent is not None else None,
            "status": "active", "reason": None,
        }
        _span(revision, placement)
        conn.execute(INSERT_REVISION, tuple(revision[c] for c in REVISION_COLUMNS))
        carried[origin["annotation"]] = number
        placed[number] = (kind, score)
        counts[kind] += 1
        written.append({"id": number, "carried_from": origin["annotation"], "anchoring": kind,
                        "score": score})

    for copy, origin in _orphans_to_try(conn, new, source, skip=placed):
        placement = placer.place(origin["start"], origin["end"], origin["exact"],
                                 origin["prefix"], origin["suffix"], threshold=threshold)
        if placement.anchoring == "orphaned":
            continue
        score = round(float(placement.score), SCORE_DIGITS)
        _anchoring_row(conn, copy["annotation"], origin["annotation"], placement.anchoring,
                       score, seq)
        moment = timeutil.now()
        now_us = max(timeutil.micros(moment), copy["modified_us"])
        copy.update(revision=copy["revision"] + 1, author=by, modified=timeutil.from_micros(now_us),
                    modified_us=now_us)
        _span(copy, placement)
        conn.execute(INSERT_REVISION, tuple(copy[c] for c in REVISION_COLUMNS))
        placed_again += 1
        counts[placement.anchoring] += 1
        written.append({"id": copy["annotation"], "carried_from": origin["annotation"],
                        "anchoring": placement.anchoring, "score": score})

    summary = {"from": source, "to": new, "threshold": threshold, **counts,
               "carried": len(written) - placed_again, "placed_again": placed_again,
               "event": None, "annotations": written}
    if not written:
        return summary
    last_row = conn.execute("SELECT max(id) FROM annotation_revisions").fetchone()[0]
    count, digest = rows_digest(conn.execute(
        f"SELECT {', '.join(_q(c) for c in REVISION_COLUMNS)} FROM annotation_revisions "
        "WHERE id BETWEEN ? AND ? ORDER BY id", (first_row, last_row)))
    last_anchoring = conn.execute("SELECT max(id) FROM annotation_anchoring").fetchone()[0]
    a_count, a_digest = anchoring_digest(conn, first_anchoring, last_anchoring)
    event = chain.append(
        actor=by, action="reanchor", subject=f"document:{new}", document=new,
        # the threshold as text: events hold no floats (canonical JSON is the same in every
        # library only without them)
        details={"from": source, "threshold": repr(threshold), **counts,
                 "carried": summary["carried"], "placed_again": placed_again,
                 "rows": {"first": first_row, "last": last_row, "count": count, "sha256": digest},
                 "anchoring": {"first": first_anchoring, "last": last_anchoring,
                               "count": a_count, "sha256": a_digest}})
    if event["seq"] != seq:  # cannot happen inside one write transaction
        raise RuntimeError(f"reanchor event {event['seq']}, expected {seq}")
    summary["event"] = seq
    return summary


def anchoring_digest(conn, first: int, last: int) -> tuple[int, str]:
    """How many anchoring rows have ids from ``first`` to ``last``, and the SHA-256 of them
    (:data:`ANCHORING_COLUMNS`, as :func:`stet.annotations.rows_digest` hashes rows)."""
    return rows_digest(conn.execute(
        f"SELECT {', '.join(ANCHORING_COLUMNS)} FROM annotation_anchoring "
        "WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)))


def _q(column: str) -> str:
    return f'"{column}"'


def _text(conn, document: int) -> str:
    row = conn.execute("SELECT text FROM texts WHERE document = ?", (document,)).fetchone()
    if row is None:
        raise NotFound(f"document {document} has no text to carry annotations to or from")
    return row[0]


def _origins(conn, source: int) -> Iterator[dict[str, Any]]:
    """The active annotations of ``source``, current state, as revision columns, in id order
    (a reply comes after its parent: it was made after it)."""
    for row in conn.execute(f"{_ORIGINS} WHERE a.document = ? AND a.status = 'active' "
                            "ORDER BY a.id", (source,)):
        yield dict(zip(REVISION_COLUMNS, row))


def _orphans_to_try(conn, new: int, source: int, *, skip) -> Iterator[tuple[dict, dict]]:
    """Each orphan on ``new`` carried from an annotation of ``source``, active, not revised
    since it was carried (nobody placed it by hand), with no parent (a reply goes with its
    parent), and the annotation it came from still active with a span: (the orphan's current
    revision, its origin's)."""
    rows = conn.execute(
        "SELECT x.annotation, x.origin FROM anchoring_state x "
        "JOIN annotations a ON a.id = x.annotation JOIN annotations o ON o.id = x.origin "
        "WHERE a.document = ? AND o.document = ? AND x.anchoring = 'orphaned' "
        "AND a.status = 'active' AND a.start IS NULL AND a.reply_to IS NULL "
        "AND o.status = 'active' AND o.start IS NOT NULL AND a.revision = 1 "
        "ORDER BY a.id", (new, source)).fetchall()
    for copy_id, origin_id in rows:
        if copy_id in skip:
            continue
        copy = dict(zip(REVISION_COLUMNS, conn.execute(
            f"{_ORIGINS} WHERE a.id = ?", (copy_id,)).fetchone()))
        origin = dict(zip(REVISION_COLUMNS, conn.execute(
            f"{_ORIGINS} WHERE a.id = ?", (origin_id,)).fetchone()))
        yield copy, origin


def _anchoring_row(conn, annotation: int, origin: int, kind: str, score: float, seq: int) -> None:
    conn.execute("INSERT INTO annotation_anchoring (annotation, origin, anchoring, score, event) "
                 "VALUES (?, ?, ?, ?, ?)", (annotation, origin, kind, score, seq))


def _span(revision: dict[str, Any], placement) -> None:
    if placement is None:
        revision.update(start=None, end=None, exact=None, prefix=None, suffix=None)
    else:
        revision.update(start=placement.start, end=placement.end, exact=placement.exact,
                        prefix=placement.prefix, suffix=placement.suffix)


def _anchoring_now(conn, annotation: int) -> tuple[str, float]:
    row = conn.execute("SELECT anchoring, score FROM anchoring_state WHERE annotation = ?",
                       (annotation,)).fetchone()
    return (row[0], float(row[1])) if row else ("exact", 1.0)


def summary_line(summary: dict[str, Any]) -> str:
    """One line for people: what a carry did."""
    if summary["event"] is None:
        return (f"document {summary['to']}: nothing to carry from document {summary['from']} "
                "(every active annotation is carried, and no orphan places)")
    parts = [f"{summary[k]} {k}" for k in ANCHORINGS]
    again = f", {summary['placed_again']} orphans placed again" if summary["placed_again"] else ""
    return (f"carried {summary['carried']} annotations from document {summary['from']} to "
            f"document {summary['to']}: {', '.join(parts)}{again} (event {summary['event']})")
