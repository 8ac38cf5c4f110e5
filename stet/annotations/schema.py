"""What an annotation is made of, written once: its columns, its motivations, and the SQL
text generated from them.

An annotation's revisions are rows of ``annotation_revisions`` (the record, append-only);
its current state is a row of ``annotations`` (derived: the latest revision). Both tables
hold the same columns: :data:`CURRENT_COLUMNS` in the current state's order, from which the
revision's order, the annotation's JSON, what a later revision may change and every INSERT,
SELECT and UPDATE below are derived. The tables and triggers themselves were created by the
released migration ``m002_annotations`` (:mod:`stet.store`), whose text is never edited:
``tests/test_annotations_schema.py`` holds it to this list.
"""

from __future__ import annotations

from typing import Iterable

#: The columns of the current state (``annotations``), in its order.
CURRENT_COLUMNS = (
    "id", "uuid", "document", "layer", "reply_to", "start", "end", "exact", "prefix", "suffix",
    "body", "motivation", "tags", "creator", "author", "created", "modified", "modified_us",
    "revision", "status", "reason",
)
#: The columns of a revision row, in insert order: the annotation's id is ``annotation`` and
#: comes first with the revision number. Never reorder: :func:`~stet.annotations.model.rows_digest`
#: hashes rows in this order, and import events hold those hashes.
REVISION_COLUMNS = ("annotation", "revision",
                    *(c for c in CURRENT_COLUMNS if c not in ("id", "revision")))
#: What revision 1 fixes for the annotation's whole life.
IDENTITY = ("id", "uuid", "document", "layer", "reply_to", "creator", "created")
#: What a later revision may change: the rest.
UPDATED = tuple(c for c in CURRENT_COLUMNS if c not in IDENTITY)
#: The keys of an annotation's JSON, in order (DESIGN.md's list, plus creator and reason).
FIELDS = tuple(c for c in CURRENT_COLUMNS if c != "modified_us")

#: The W3C Web Annotation motivations (https://www.w3.org/TR/annotation-vocab/#motivation).
W3C_MOTIVATIONS = (
    "assessing", "bookmarking", "classifying", "commenting", "describing", "editing",
    "highlighting", "identifying", "linking", "moderating", "questioning", "replying",
    "tagging",
)
#: Every motivation stet accepts: the W3C's and stet's one extension (``stet:correcting``).
MOTIVATIONS = (*W3C_MOTIVATIONS, "correcting")


def name(column: str) -> str:
    """A column as SQL: ``end`` is a keyword and is quoted."""
    return '"end"' if column == "end" else column


def in_revisions(column: str) -> str:
    """The revision column that holds a current-state column."""
    return "annotation" if column == "id" else column


def select(alias: str, columns: Iterable[str] = FIELDS, *, revisions: bool = False,
           replace: dict[str, str] | None = None) -> str:
    """A select list of annotation ``columns`` from the row ``alias`` (of ``annotations``, or
    with ``revisions`` of ``annotation_revisions``, where ``id`` is ``annotation``);
    ``replace`` puts an SQL expression in place of a column (the layer's name for its id)."""
    replace = replace or {}
    return ", ".join(
        replace[c] if c in replace
        else f"{alias}.{name(in_revisions(c) if revisions else c)}" for c in columns)


INSERT_REVISION = (
    "INSERT INTO annotation_revisions (" + ", ".join(f'"{c}"' for c in REVISION_COLUMNS) + ") "
    f"VALUES ({', '.join('?' * len(REVISION_COLUMNS))})"
)


def state_at(at: str = ":at", *, document: str | None = None) -> str:
    """The annotations as they stood at an instant, as the SQL of a subquery: for each
    annotation with a revision made at or before ``at`` (microseconds since 1970), that
    latest revision, with every column of ``annotation_revisions`` (the annotation's id is
    ``annotation``; retracted ones included: filter on ``status``). ``at`` and ``document``
    are SQL expressions: parameters (``:at``, ``?``) or ``stet_micros(:at)`` in Datasette.

        SELECT a.annotation, a.body FROM ({state_at('?')}) a WHERE a.status = 'active'

    SQLite takes the bare columns of a ``max()`` aggregate from the row holding the maximum:
    the latest revision of each annotation. Against a correlated ``revision = (SELECT
    max(revision) ...)`` (224,000 revisions, 2,000 documents): the same answers; one document
    1.0 ms against 1.1 (``annotation_revisions_document_time`` finds its rows); the whole
    archive in document and span order 1.2 s against 2.8 s, in revision-row order with
    joins 0.95 s against 0.8 s."""
    where = f"modified_us <= {at}" + (f" AND document = {document}" if document else "")
    return f"SELECT *, max(revision) FROM annotation_revisions WHERE {where} GROUP BY annotation"


#: The latest revision of each annotation among those with ids above ``:before`` (a bulk
#: import's rows): a FROM clause with the row alias ``r``.
_LATEST_WRITTEN = (
    "FROM annotation_revisions r WHERE r.id > :before AND r.revision = "
    "(SELECT max(revision) FROM annotation_revisions WHERE annotation = r.annotation)"
)


def insert_current(source: str) -> str:
    """INSERT of the current state of an annotation from its revision ``source`` (a row
    alias: ``NEW`` in a trigger)."""
    return (f"INSERT INTO annotations ({', '.join(map(name, CURRENT_COLUMNS))}) "
            f"VALUES ({select(source, CURRENT_COLUMNS, revisions=True)})")


def update_current(source: str) -> str:
    """The SET clause that brings a current state up to its revision ``source``."""
    return "UPDATE annotations SET " + ", ".join(f"{name(c)} = {source}.{name(c)}"
                                                 for c in UPDATED)


#: After a bulk import: new revisions of annotations the archive had (ids below ``:first``)
#: become their current state, then the annotations it created (from ``:first`` on) get
#: theirs, in id order. Parameters ``:before`` (the last revision row id before the import)
#: and ``:first``.
CURRENT_FROM_IMPORT = (
    f"{update_current('r')} {_LATEST_WRITTEN} AND r.annotation = annotations.id "
    "AND annotations.id < :first",
    f"INSERT INTO annotations ({', '.join(map(name, CURRENT_COLUMNS))}) "
    f"SELECT {select('r', CURRENT_COLUMNS, revisions=True)} {_LATEST_WRITTEN} "
    "AND r.annotation >= :first ORDER BY r.annotation",
)


def current_state_triggers() -> str:
    """The triggers that keep ``annotations`` current on each insert of a revision, as
    generated from the column list (the released text is :data:`stet.store.CURRENT_STATE_TRIGGERS`,
    which equals this but for white space)."""
    return (
        "CREATE TRIGGER annotation_revisions_create AFTER INSERT ON annotation_revisions "
        f"WHEN NEW.revision = 1 BEGIN {insert_current('NEW')}; END; "
        "CREATE TRIGGER annotation_revisions_current AFTER INSERT ON annotation_revisions "
        f"WHEN NEW.revision > 1 BEGIN {update_current('NEW')} WHERE id = NEW.annotation; END;"
    )


def current_state_mismatches(moves: bool = False) -> str:
    """Annotations whose current state is not their latest revision (by EXCEPT). With
    ``moves`` (the chain holds ``layer-rename`` or ``layer-merge`` events), the current
    state's layer is the revision's layer followed through those moves
    (:func:`layer_targets`)."""
    columns = [c for c in CURRENT_COLUMNS if c != "id"]
    listed = ", ".join(map(name, columns))
    if not moves:
        return (f"SELECT annotation, {listed} FROM annotation_revisions r WHERE revision = "
                "(SELECT max(revision) FROM annotation_revisions WHERE annotation = r.annotation) "
                f"EXCEPT SELECT id, {listed} FROM annotations")
    mapped = ", ".join("coalesce(m.target, r.layer)" if c == "layer" else f"r.{name(c)}"
                       for c in columns)
    return (f"SELECT r.annotation, {mapped} FROM annotation_revisions r "
            f"LEFT JOIN ({layer_targets()}) m ON m.layer = r.layer WHERE r.revision = "
            "(SELECT max(revision) FROM annotation_revisions WHERE annotation = r.annotation) "
            f"EXCEPT SELECT id, {listed} FROM annotations")


#: The events that move a layer's annotations to another layer: a rename (into the new
#: layer row it creates) and a merge. Each names the layers by id in ``from`` and ``into``.
LAYER_MOVES = ("layer-rename", "layer-merge")


def layer_targets(until: str | None = None) -> str:
    """The SQL of a query of ``(layer, target)``: for each layer, the layer its annotations
    are in, following every rename and merge (``target`` is ``layer`` itself when it never
    moved). ``until``: an SQL expression (a stored time), only the moves made at or before
    it (the layers as they stood then). A layer moves at most once (a renamed or merged
    layer is closed), so the path is a chain."""
    bound = f" AND time <= {until}" if until else ""
    return (
        "WITH RECURSIVE moves(source, target) AS (SELECT json_extract(details, '$.from'), "
        "json_extract(details, '$.into') FROM events WHERE action IN "
        f"({', '.join(repr(a) for a in LAYER_MOVES)}) AND json_extract(details, '$.from') "
        f"IS NOT NULL{bound}), "
        "path(layer, target, depth) AS (SELECT id, id, 0 FROM layers UNION "
        "SELECT p.layer, m.target, p.depth + 1 FROM path p JOIN moves m ON m.source = p.target "
        "WHERE p.depth < 1000) "
        "SELECT layer, target FROM path p WHERE NOT EXISTS "
        "(SELECT 1 FROM moves m WHERE m.source = p.target)"
    )
