"""A bulk import refuses exactly what the per-row triggers refuse, with the same error.

Inside its own write transaction (which no other connection sees) an import drops the BEFORE
INSERT triggers of ``annotation_revisions`` (``annotation_revisions_span``, ``_sequence``,
``_no_replace``, ``_spanless``) with the current state's, writes each batch of revision rows
with ``executemany`` and checks the batch set-based (``RowChecks``, in
``stet/annotations/rowchecks.py``), then creates the triggers again from their own text before
it commits. The constraints (NOT NULL, CHECK, UNIQUE, foreign keys) stay in force; a row one
of them refuses is inserted once more with the triggers in place, so that a trigger that would
have fired first still has its say.

Each case below is a list of revision rows (``REVISION_COLUMNS`` order), fed to two copies of
one archive: once through the **per-row path**, a plain ``executemany`` of ``INSERT_REVISION``
with every trigger in place (what any client's insert meets), and once through the **bulk
path**, ``Importer._insert`` (the method that writes every batch of every import: it drops the
triggers, inserts, checks) in batches of 1, 2 and 50 rows, then ``Importer.finish``. Both must
raise the same exception (type and message), leave the archive as it was after the rollback,
or both accept the rows and hold the same revisions and the same current state. The expected
message is asserted too, so that each case is known to reach the rule it is about.

Why rows and not W3C files: the importer checks each of these rules in Python before it writes
(a span outside the text is re-anchored or refused, a revision out of sequence or dated before
the last one, a changed identity, an annotation without a span and without ``stet:anchoring``
are refused with messages of their own: ``tests/test_import_forgery.py``, ``tests/test_w3c*.py``,
``tests/test_versions.py``, which all run through the bulk path, as every import does), so no
W3C file can bring a row that a trigger refuses; only a forged row could, and the rows a file
becomes are given to the database by ``Importer._insert``. So the forged rows are given to it.
The last tests go through ``stet import`` end to end: the triggers it recreates, a refusal
through the whole path, and an archive whose triggers are not stet's (then the import keeps
them and they fire per row).

The current state's triggers are dropped too (since 2026-11-29: the current state is written
by two set-based statements at the end), and what they refuse per row is refused at the end
with the same error: a revision 1 whose uuid (or annotation) the current state already has.
Those cases are here as well, with the rows around them in either order.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stet import Archive
from stet.annotations import importer as importer_module
from stet.annotations.importer import Importer
from stet.annotations.rowchecks import CHECKED_TRIGGERS, REVISION_TRIGGERS, RowChecks
from stet.annotations.schema import INSERT_REVISION, REVISION_COLUMNS
from stet.annotations.w3c import revision_iri
from stet.errors import InvalidInput
from stet.provenance import Chain
from stet.verify import expected_schema

TEXT = "The Commission met in Geneva on 12 March; the minutes were published in April.\n"
OTHER = "Another text, شَخْصٍ and آزادی\u200cهای, for a second document.\n"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
CREATED = "2026-01-01T00:00:00.000000Z"

SPAN = "annotation_revisions: span outside the text"
SEQUENCE = "annotation_revisions: revision must follow the last one, not dated before it"
IDENTITY = ("annotation_revisions: a revision keeps its annotation's uuid, document, layer, "
            "creator, created and reply_to")
EXISTS = "annotation_revisions is append-only: that row exists already"
SPANLESS = "annotation_revisions: only a reply, or an orphaned carried annotation, has no span"
CHECK = "CHECK constraint failed: "
UUID = "UNIQUE constraint failed: annotations.uuid"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An archive with two documents, two layers, annotation 1 (two revisions, on document 1)
    and annotation 2 (a reply to 1, without a span): the rows below build on them."""
    folder = tmp_path_factory.mktemp("checks")
    (folder / "docs").mkdir()
    (folder / "docs" / "a.txt").write_text(TEXT, encoding="utf-8")
    (folder / "docs" / "b.txt").write_text(OTHER, encoding="utf-8")
    with Archive(folder / "template.db") as archive:
        archive.ingest([folder / "docs"], by="archivist")
        docs = {row[1]: row[0] for row in archive.conn.execute(
            "SELECT document, length FROM texts")}
        assert sorted(docs) == sorted([len(TEXT), len(OTHER)])
        assert docs[len(TEXT)] == 1
        first = archive.annotate(1, layer="claims", quote="Geneva", body="the place", by="ana")
        archive.revise(first["id"], body="Geneva, Palais des Nations", by="bo")
        archive.annotate(None, layer=None, reply_to=first["id"], body="agreed", by="cy")
        archive.add_layer("entities", by="ana")
        assert archive.conn.execute("SELECT id, name FROM layers").fetchall() == [
            (1, "claims"), (2, "entities")]
    return folder / "template.db"


def copy(template) -> sqlite3.Connection:
    """The template archive, in memory (a page-for-page copy: the same schema, in the same
    order), with foreign keys on, as stet opens an archive."""
    source = sqlite3.connect(template)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    source.backup(conn)
    source.close()
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def stored(conn, annotation: int, revision: int) -> dict:
    row = conn.execute(f"SELECT {', '.join(map(_name, REVISION_COLUMNS))} FROM "
                       "annotation_revisions WHERE annotation = ? AND revision = ?",
                       (annotation, revision)).fetchone()
    return dict(zip(REVISION_COLUMNS, row))


def _name(column: str) -> str:
    return f'"{column}"'


def row(annotation: int, revision=1, **changes) -> tuple:
    """A revision row: by default a valid revision of a new annotation on document 1, spanning
    "Commission", dated T0 plus its revision number (microseconds)."""
    values = {
        "annotation": annotation, "revision": revision,
        "uuid": f"00000000-0000-4000-8000-{annotation:012d}", "document": 1, "layer": 1,
        "reply_to": None, "start": 4, "end": 14, "exact": "Commission", "prefix": "The ",
        "suffix": " met in Geneva on 12 March; the mi", "body": f"note {annotation}",
        "motivation": "commenting", "tags": "[]", "creator": "ana", "author": "ana",
        "created": CREATED, "modified": CREATED, "modified_us": T0 + int(revision),
        "status": "active", "reason": None,
    }
    unknown = set(changes) - set(values)
    assert not unknown, unknown
    values.update(changes)
    return tuple(values[c] for c in REVISION_COLUMNS)


def later(t1: dict, revision: int, **changes) -> tuple:
    """A later revision of the template's annotation 1, whose revision 2 (its last) is ``t1``."""
    values = {**t1, "revision": revision, "modified_us": t1["modified_us"] + 1,
              "body": f"revision {revision}"}
    values.update(changes)
    return tuple(values[c] for c in REVISION_COLUMNS)


def spanless(annotation: int, revision=1, **changes) -> tuple:
    return row(annotation, revision, start=None, end=None, exact=None, prefix=None,
               suffix=None, **changes)


def orphaned(annotation: int, anchoring="orphaned") -> str:
    return ("INSERT INTO annotation_anchoring (annotation, origin, anchoring, score, event) "
            f"VALUES ({annotation}, NULL, '{anchoring}', 0, 1)")


#: A forged archive: a revision row with id -1 (NEW."id" is -1 in a BEFORE INSERT trigger, so
#: the append-only trigger then refuses every insert that gives no id).
FORGED_ID = ("INSERT INTO annotation_revisions (id, " + ", ".join(map(_name, REVISION_COLUMNS))
             + ") VALUES (-1, " + ", ".join("?" * len(REVISION_COLUMNS)) + ")")

#: A damaged archive: a current state (annotation 7) with no revision rows behind it.
CURRENT_WITHOUT_REVISIONS = (
    "INSERT INTO annotations (id, uuid, document, layer, start, \"end\", exact, body, motivation, "
    "tags, creator, author, created, modified, modified_us, revision, status) VALUES (7, "
    "'damaged', 1, 1, 4, 14, 'Commission', '', 'commenting', '[]', 'ana', 'ana', "
    f"'{CREATED}', '{CREATED}', {T0}, 1, 'active')")


def cases(t1: dict) -> dict[str, tuple[list[tuple], tuple, str | None]]:
    """Each case: its rows, statements run first (in the same transaction), and the start of
    the error both paths must raise (None: both accept). ``t1``: annotation 1's revision 2."""
    return {
        # -- accepted -------------------------------------------------------------------------
        "accepted: new annotations, their revisions, a reply, a revision of annotation 1": (
            [row(3), row(4, document=2, start=0, end=7, exact="Another", prefix="",
                         suffix=" text, شَخْصٍ and آزادی\u200cهای, for a s"),
             row(3, 2, body="revised"), spanless(5, reply_to=1), row(3, 3, status="retracted"),
             later(t1, 3), row(6, reply_to=2, layer=2)], (), None),
        "accepted: an orphaned carried annotation, its anchoring row written first": (
            [spanless(3), spanless(3, 2)], (orphaned(3),), None),
        "accepted: values stored with their column's affinity, as the trigger sees them": (
            [row(3), row(3, "2", modified_us=str(T0 + 2))], (), None),
        "accepted: a revision dated the same microsecond as the one it follows": (
            [row(3), row(3, 2, modified_us=T0 + 1)], (), None),
        # -- span -----------------------------------------------------------------------------
        "span: ends after the text": (
            [row(3, start=len(TEXT) - 2, end=len(TEXT) + 1, exact="l.\nx")], (), SPAN),
        "span: on a document that is not in the archive": ([row(3, document=99)], (), SPAN),
        "span: in a revision": ([row(3), row(3, 2, start=70, end=80, exact="x" * 10)], (), SPAN),
        "span: after good rows, in a later batch": (
            [row(3), row(4), row(5), row(6, start=78, end=80, exact="ab")], (), SPAN),
        "span: within document 1's length, not within its own (document 2's)": (
            [row(3, document=2, start=70, end=75, exact=TEXT[70:75])], (), SPAN),
        # -- sequence and dating --------------------------------------------------------------
        "sequence: revision 2 without revision 1": ([row(3, 2)], (), SEQUENCE),
        "sequence: revision 2 written before its revision 1": ([row(3, 2), row(3)], (), SEQUENCE),
        "sequence: a gap": ([row(3), row(3, 3)], (), SEQUENCE),
        "sequence: dated before the revision it follows": (
            [row(3, modified_us=T0 + 10), row(3, 2, modified_us=T0 + 9)], (), SEQUENCE),
        "sequence: annotation 1's revision 3 dated before its revision 2": (
            [later(t1, 3, modified_us=t1["modified_us"] - 1)], (), SEQUENCE),
        "sequence: a revision 4 of annotation 1, whose last is 2": ([later(t1, 4)], (), SEQUENCE),
        "sequence: a revision 3 that has a span outside the text too (sequence fires first)": (
            [row(3), row(3, 3, start=70, end=90, exact="x" * 20)], (), SEQUENCE),
        # -- identity -------------------------------------------------------------------------
        **{f"identity: revision 2 with another {column}": (
            [row(3), row(3, 2, **{column: value})], (), IDENTITY)
           for column, value in [("uuid", "00000000-0000-4000-8000-999999999999"), ("layer", 2),
                                 ("creator", "mallory"), ("created", "2026-01-01T00:00:00Z"),
                                 ("reply_to", 1)]},
        "identity: revision 2 on another document": (
            [row(3), row(3, 2, document=2, start=0, end=7, exact="Another")], (), IDENTITY),
        "identity: revision 2 that is not a reply, of a reply": (
            [row(3, reply_to=1), row(3, 2)], (), IDENTITY),
        "identity: annotation 1's revision 3 by another creator": (
            [later(t1, 3, creator="mallory")], (), IDENTITY),
        # -- append-only ----------------------------------------------------------------------
        "append-only: annotation 1's revision 1 again": (
            [row(3), row(1, 1, uuid="x", body="again")], (), EXISTS),
        "append-only: annotation 1's revision 2 again, exactly as stored": (
            [tuple(t1[c] for c in REVISION_COLUMNS)], (), EXISTS),
        "append-only: the same revision twice in the file": ([row(3), row(3)], (), EXISTS),
        "append-only: the same revision twice, with another body": (
            [row(3), row(4), row(3, body="other")], (), EXISTS),
        "append-only: a forged row with id -1 refuses every insert": (
            [row(3)], ((FORGED_ID, row(99, uuid="forged")),), EXISTS),
        # -- only a reply or an orphan has no span --------------------------------------------
        "spanless: an annotation without a span, not a reply": ([spanless(3)], (), SPANLESS),
        "spanless: its anchoring row says exact, not orphaned": (
            [spanless(3)], (orphaned(3, "exact"),), SPANLESS),
        "spanless: the anchoring row is another annotation's": (
            [spanless(3)], (orphaned(4),), SPANLESS),
        "spanless: a revision without a span of an annotation that had one": (
            [row(3), spanless(3, 2)], (), SPANLESS),
        # -- constraints (refused by the database itself, with or without triggers) -----------
        "CHECK: start not before end": ([row(3, start=5, end=5, exact="")], (), CHECK),
        "CHECK: exact not end - start long": ([row(3, exact="Commissio")], (), CHECK),
        "CHECK: a negative start": ([row(3, start=-1, exact="xCommission"[:15])], (), CHECK),
        "CHECK: a span without exact": ([row(3, exact=None)], (), CHECK),
        "spanless: an end without a start, not a reply (before the CHECK)": (
            [row(3, start=None, exact=None)], (), SPANLESS),
        "CHECK: an end without a start, in a reply": (
            [row(3, start=None, exact=None, reply_to=1)], (), CHECK),
        "CHECK: status": ([row(3, status="deleted")], (), CHECK),
        "CHECK: tags not JSON": ([row(3, tags="not json")], (), CHECK),
        "CHECK: tags not an array": ([row(3, tags='{"a": 1}')], (), CHECK),
        "CHECK: annotation 0": ([row(0)], (), CHECK),
        "CHECK: revision 0": ([row(3, 0)], (), CHECK),
        "CHECK after a row a trigger refuses: the trigger's error": (
            [row(3), row(4, 2), row(5, status="deleted")], (), SEQUENCE),
        "a trigger after a row a CHECK refuses: the CHECK's error": (
            [row(3), row(4, status="deleted"), row(5, 2)], (), CHECK),
        "a row both a trigger and a CHECK refuse: the trigger's error": (
            [row(3), row(3, 3, status="deleted")], (), SEQUENCE),
        "NOT NULL: body": ([row(3, body=None)], (), "NOT NULL constraint failed: "),
        "NOT NULL: creator, in a later batch": (
            [row(3), row(4), row(5, creator=None)], (), "NOT NULL constraint failed: "),
        # -- the current state's trigger (a new annotation's uuid, or id, is taken) ---------
        "current state: two new annotations with one uuid": (
            [row(3), row(4), row(5, uuid=row(3)[2])], (), UUID),
        "current state: a uuid taken, then a row a trigger refuses": (
            [row(3), row(4, uuid=row(3)[2]), row(5, 2)], (), UUID),
        "current state: a row a trigger refuses, then a uuid taken": (
            [row(3), row(4, 2), row(5, uuid=row(3)[2])], (), SEQUENCE),
        "current state: a uuid taken, then a row a CHECK refuses": (
            [row(3), row(4, uuid=row(3)[2]), row(5, status="deleted")], (), UUID),
        "current state: annotation 1's uuid for a new annotation": (
            [row(3, uuid=t1["uuid"])], (), UUID),
        "current state: a uuid taken by a row whose layer is not there (the foreign key is "
        "checked after)": ([row(3), row(4, uuid=row(3)[2], layer=99)], (), UUID),
        "current state: an annotation the current state has without revisions (a damaged "
        "archive): its revision 1": ([row(3), row(7)], (CURRENT_WITHOUT_REVISIONS,), "UNIQUE "
                                      "constraint failed: annotations.id"),
        "foreign key: a layer that is not there": (
            [row(3), row(4, layer=99)], (), "FOREIGN KEY constraint failed"),
    }


def outcome(conn, work) -> tuple:
    """Run ``work`` in a write transaction: its error (type and message), or the revisions and
    current state it leaves; then roll back and check that the archive is as it was."""
    before = everything(conn)
    triggers, indexes = trigger_list(conn), index_list(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        work(conn)
        result = ("accepted", everything(conn))
        assert trigger_list(conn) == triggers, "the triggers are created again, in order"
        assert index_list(conn) == indexes, "the indexes dropped are built again"
    except sqlite3.Error as exc:
        result = (type(exc).__name__, str(exc))
    finally:
        conn.execute("ROLLBACK")
    assert everything(conn) == before, "nothing written"
    assert (trigger_list(conn), index_list(conn)) == (triggers, indexes)
    return result


def everything(conn) -> tuple:
    return (conn.execute("SELECT * FROM annotation_revisions ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM annotations ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM annotation_anchoring ORDER BY id").fetchall())


def index_list(conn) -> list[tuple[str, str, str]]:
    return sorted(conn.execute("SELECT name, tbl_name, sql FROM sqlite_master "
                               "WHERE type = 'index'").fetchall(), key=str)


def trigger_list(conn) -> tuple[list[tuple[str, str]], dict[str, list[str]], dict[str, list[str]]]:
    """Every trigger with its SQL; for each table, the names of its BEFORE INSERT triggers,
    then of its AFTER INSERT ones, each in the order they fire (the last created first: only
    the order among one table's triggers decides which fires first). (The UPDATE and DELETE
    triggers are never dropped.)"""
    found = conn.execute("SELECT name, sql, tbl_name FROM sqlite_master WHERE type = 'trigger' "
                         "ORDER BY rowid DESC").fetchall()
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for name, sql, table in found:
        if " BEFORE INSERT ON " in sql:
            before.setdefault(table, []).append(name)
        elif " AFTER INSERT ON " in sql:
            after.setdefault(table, []).append(name)
    return sorted((name, sql) for name, sql, _ in found), before, after


def setup(conn, statements) -> None:
    for statement in statements:
        if isinstance(statement, tuple):
            conn.execute(*statement)
        else:
            conn.execute(statement)


def per_row(rows, statements=()):
    def work(conn):
        setup(conn, statements)
        conn.executemany(INSERT_REVISION, rows)
    return work


def bulk(rows, statements=(), batch=2, check=None):
    def work(conn):
        setup(conn, statements)
        importer = Importer(conn, Chain(conn), by="test")
        # rows of annotations the archive had (ids below first_id): as _row notes them
        importer.revised_existing = any(isinstance(r[0], int) and r[0] < importer.first_id
                                        for r in rows)
        for offset in range(0, len(rows), batch):
            importer._insert(list(rows[offset:offset + batch]))
        if check is not None:
            check(importer)
        importer.finish()
    return work


def set_based(importer) -> None:
    assert importer.checks.set_based, "the rules are checked set-based, the triggers dropped"


#: annotation 1's revision 2 stands in for the names (its values are read from the template)
_NAMES = list(cases({c: 0 for c in REVISION_COLUMNS}))


@pytest.mark.parametrize("case", _NAMES)
def test_both_paths_refuse_the_same_rows_with_the_same_error(template, case, monkeypatch):
    conn = copy(template)
    rows, statements, expected = cases(stored(conn, 1, 2))[case]
    reference = outcome(conn, per_row(rows, statements))
    if expected is None:
        assert reference[0] == "accepted", reference
    else:
        assert reference[0] == "IntegrityError" and reference[1].startswith(expected), reference
    # the revisions' indexes kept as rows go in, and dropped once the import has written as
    # many rows as the archive had (3 here: from the fourth row on, mid-batch for some cases)
    for drop_from in (importer_module.REBUILD_REVISION_INDEXES_FROM, 1):
        monkeypatch.setattr(importer_module, "REBUILD_REVISION_INDEXES_FROM", drop_from)
        for batch in (1, 2, 50):
            assert outcome(conn, bulk(rows, statements, batch, check=set_based)) == reference, \
                (batch, drop_from)
    conn.close()


def test_the_checked_triggers_are_stets_own():
    """The rules mirror the triggers a fresh archive has, by their exact text; every trigger of
    annotation_revisions is known."""
    schema, _ = expected_schema()
    triggers = {name: sql for (kind, name), (table, sql) in schema.items()
                if kind == "trigger" and table == "annotation_revisions"}
    assert set(triggers) == REVISION_TRIGGERS
    for name, (sha, rules) in CHECKED_TRIGGERS.items():
        assert hashlib.sha256(triggers[name].encode()).hexdigest() == sha, name
        for message, _ in rules:  # each message is the trigger's own
            assert f"'{message}'".replace("'s ", "''s ") in triggers[name], (name, message)


def test_the_rules_are_applied_in_firing_order(template):
    conn = copy(template)
    checks = RowChecks(conn, 0)
    fired = [name for name in trigger_list(conn)[1]["annotation_revisions"] if name in CHECKED_TRIGGERS]
    assert fired == ["annotation_revisions_spanless", "annotation_revisions_no_replace",
                     "annotation_revisions_sequence", "annotation_revisions_span"]
    assert [message for message, _ in checks.rules] == [
        message for name in fired for message, _ in CHECKED_TRIGGERS[name][1]]


# -- random rows: both paths agree ---------------------------------------------------------

#: What a random row may have changed, each the way a forged row could be: (column, values).
CORRUPTIONS = [
    ("uuid", ["00000000-0000-4000-8000-999999999999"]), ("document", [2, 99]),
    ("layer", [2, 99]), ("reply_to", [1, 2]), ("creator", ["mallory"]),
    ("created", ["2025-12-31T00:00:00.000000Z"]), ("status", ["retracted", "deleted"]),
    ("body", [None]), ("tags", ["not json", "{}"]), ("start", [None, -1, 70]),
    ("end", [len(TEXT) + 1, 200]), ("exact", [None, "Commissio", "x" * 10]),
    ("modified_us", [T0 - 10, T0 + 10]), ("revision", [0, 1, 2, 4]), ("annotation", [0, 3]),
]


@st.composite
def random_rows(draw):
    """Rows as (annotation, revision, changes): mostly valid revisions in sequence of new
    annotations 3, 4 and 5 and of annotation 1 (whose last revision is 2), about one in four
    with a column changed; sometimes an anchoring row or a forged row first."""
    specs, following = [], {1: 3}
    for _ in range(draw(st.integers(1, 6))):
        annotation = draw(st.sampled_from([3, 3, 4, 4, 5, 1]))
        revision = following.get(annotation, 1)
        following[annotation] = revision + 1
        changes = {}
        if annotation != 1:
            changes["modified_us"] = T0 + revision
        if draw(st.integers(0, 3)) == 0:
            column, values = draw(st.sampled_from(CORRUPTIONS))
            changes[column] = draw(st.sampled_from(values))
            if column == "start" and changes[column] is None and draw(st.booleans()):
                changes.update(end=None, exact=None, prefix=None, suffix=None)
        specs.append((annotation, revision, changes))
    statements = []
    if draw(st.integers(0, 4)) == 0:
        statements.append(orphaned(draw(st.sampled_from([3, 4])),
                                   draw(st.sampled_from(["orphaned", "exact"]))))
    if draw(st.integers(0, 29)) == 0:
        statements.append((FORGED_ID, row(99, uuid="forged")))
    return specs, statements, draw(st.sampled_from([1, 2, 50]))


def materialize(specs, t1: dict) -> list[tuple]:
    rows = []
    for annotation, revision, changes in specs:
        changes = dict(changes)
        revision = changes.pop("revision", revision)
        if annotation == 1:
            changes.setdefault("modified_us", t1["modified_us"] + 1)
            rows.append(later(t1, revision, **changes))
        else:
            rows.append(row(changes.pop("annotation", annotation), revision, **changes))
    return rows


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(random_rows())
def test_random_rows_meet_the_same_answer_on_both_paths(template, case):
    specs, statements, batch = case
    conn = copy(template)
    try:
        rows = materialize(specs, stored(conn, 1, 2))
        assert outcome(conn, bulk(rows, statements, batch, check=set_based)) == \
            outcome(conn, per_row(rows, statements))
    finally:
        conn.close()


# -- end to end ------------------------------------------------------------------------------


def export(db) -> str:
    with Archive(str(db)) as archive:
        out = io.StringIO()
        archive.export(out, fmt="jsonl", history=True)
    return out.getvalue()


def test_an_import_creates_the_triggers_again_as_they_were(tmp_path, template):
    """Through ``stet import``: the same triggers, with the same text, firing in the same
    order, and an archive that verifies."""
    (tmp_path / "all.jsonl").write_text(export(template), encoding="utf-8")
    with Archive(tmp_path / "b.db") as target:
        target.ingest([template.parent / "docs"], by="archivist")
        before = trigger_list(target.conn)
        [result] = target.import_([tmp_path / "all.jsonl"])
        assert (result["annotations"], result["revisions"]) == (2, 3)
        assert trigger_list(target.conn) == before
        assert target.verify() == []
        again = target.import_([tmp_path / "all.jsonl"])  # nothing new: nothing written
        assert again[0]["revisions"] == 0 and trigger_list(target.conn) == before


def test_a_large_import_builds_the_revisions_indexes_again(tmp_path, template, monkeypatch):
    """Once an import has written as many revision rows as the archive had (and at least
    REBUILD_REVISION_INDEXES_FROM), the revisions' secondary indexes are dropped and built
    again at the end, from their own text; the archive verifies and its queries use them."""
    monkeypatch.setattr(importer_module, "REBUILD_REVISION_INDEXES_FROM", 1)
    monkeypatch.setattr(Importer, "BATCH", 1)
    (tmp_path / "all.jsonl").write_text(export(template), encoding="utf-8")
    seen = []
    finish = Importer.finish

    def spying(self):
        seen.append(index_list(self.conn))  # as the last batch left them
        finish(self)

    monkeypatch.setattr(Importer, "finish", spying)
    with Archive(tmp_path / "b.db") as target:
        target.ingest([template.parent / "docs"], by="archivist")
        before = index_list(target.conn)
        assert ("annotation_revisions_document_time", "annotation_revisions") in \
            [i[:2] for i in before]
        [result] = target.import_([tmp_path / "all.jsonl"])
        assert result["revisions"] == 3
        assert [i for i in before if i not in seen[0]] == [
            i for i in before if i[0] == "annotation_revisions_document_time"], "dropped"
        assert index_list(target.conn) == before and target.verify() == []
        plan = target.conn.execute("EXPLAIN QUERY PLAN SELECT id FROM annotation_revisions "
                                   "WHERE document = 1 AND modified_us < 5").fetchall()
        assert "annotation_revisions_document_time" in plan[0][-1]


def test_an_archive_whose_triggers_are_not_stets_keeps_them_per_row(template):
    """A changed trigger is not one the rules mirror: the import leaves the BEFORE INSERT
    triggers in place (they fire per row) and still writes the current state set-based."""
    conn = copy(template)
    conn.execute("DROP TRIGGER annotation_revisions_span")
    conn.execute("CREATE TRIGGER annotation_revisions_span BEFORE INSERT ON annotation_revisions "
                 "WHEN NEW.body = 'refuse me' BEGIN SELECT RAISE(ABORT, 'a local rule'); END")

    def per_row_mode(importer):
        assert not importer.checks.set_based

    assert outcome(conn, bulk([row(3), row(4, body="refuse me")], check=per_row_mode)) == \
        ("IntegrityError", "a local rule")
    assert outcome(conn, bulk([row(3, 2)], check=per_row_mode)) == ("IntegrityError", SEQUENCE)
    accepted = outcome(conn, bulk([row(3), row(3, 2)], check=per_row_mode))
    assert accepted[0] == "accepted"
    assert accepted == outcome(conn, per_row([row(3), row(3, 2)]))
    conn.close()


def test_a_refusal_through_the_whole_import(tmp_path, template, monkeypatch):
    """A row the importer built that a trigger refuses (no file can bring one: forged here by
    a hook on the row built, its end moved past the text's): the import is refused with the
    trigger's error and writes nothing, its event included."""
    items = [json.loads(line) for line in export(template).splitlines()]
    items = [item for item in items if item["stet:revision"] == 1
             and isinstance(item["target"], dict)]  # annotation 1, not the reply
    for item in items:  # another annotation, new to the archive
        item["dcterms:isVersionOf"] = {"id": item["dcterms:isVersionOf"]["id"][:-3] + "abc"}
    path = tmp_path / "one.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    shutil.copy(template, tmp_path / "t.db")
    built = Importer._row

    def forged(self, parsed):
        found = built(self, parsed)
        return found[:7] + (10_000,) + found[8:] if isinstance(found, tuple) else found

    monkeypatch.setattr(Importer, "_row", forged)
    with Archive(tmp_path / "t.db") as target:
        before = (target.counts(), trigger_list(target.conn))
        with pytest.raises(sqlite3.IntegrityError) as error:
            target.import_([path])
        assert str(error.value) == SPAN
        assert error.value.sqlite_errorname == "SQLITE_CONSTRAINT_TRIGGER"
        assert (target.counts(), trigger_list(target.conn)) == before
        monkeypatch.setattr(Importer, "_row", built)
        assert target.import_([path])[0]["revisions"] == 1  # as the file says: imported


def test_a_refusal_while_the_worker_is_ahead_stops_it(tmp_path, template, monkeypatch):
    """The worker parses batches ahead (read by a thread, at most AHEAD of them): refused early
    in a long file, the import stops the worker and the thread, and writes nothing."""
    import threading

    from stet.annotations import worker

    monkeypatch.setattr(worker, "WORKER_BYTES", 0)
    monkeypatch.setattr(worker, "cpus", lambda: 2)
    monkeypatch.setattr(worker, "AHEAD", 1)
    monkeypatch.setattr(Importer, "BATCH", 2)
    [item] = [item for item in map(json.loads, export(template).splitlines())
              if item["stet:revision"] == 1 and isinstance(item["target"], dict)]
    items = []
    for n in range(300):  # new annotations, the fifth a revision 2 with no revision 1
        copy_ = json.loads(json.dumps(item))
        uuid = f"00000000-0000-4000-8000-{n:012d}"
        copy_["dcterms:isVersionOf"] = {"id": f"urn:uuid:{uuid}"}
        copy_["id"] = f"urn:uuid:{uuid}"
        if n == 4:
            copy_["stet:revision"] = 2
            copy_["dcterms:replaces"] = {"id": revision_iri(uuid, 1)}
        items.append(copy_)
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    shutil.copy(template, tmp_path / "t.db")
    with Archive(tmp_path / "t.db") as target:
        before = target.counts()
        with pytest.raises(InvalidInput, match="line 5: revision 2 of urn:uuid:"):
            target.import_([path])
        assert target.counts() == before
    assert not [t for t in threading.enumerate() if t.name == "stet-import-reader"]
    items[4] = {**items[3], "id": items[4]["id"],
                "dcterms:isVersionOf": items[4]["dcterms:isVersionOf"]}
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    with Archive(tmp_path / "t.db") as target:  # and the whole file, through the worker
        [result] = target.import_([path])
        assert (result["annotations"], result["revisions"]) == (300, 300)
        assert target.verify() == []
