"""The rules of ``annotation_revisions``' per-row triggers, checked set-based over the rows a
bulk import writes (:class:`RowChecks`), refusing exactly what the triggers refuse.

The import (:mod:`stet.annotations.importer`) drops the triggers for its own write
transaction, writes each batch with ``executemany`` and has :class:`RowChecks` check it;
``tests/test_import_checks.py`` gives the same rows to both paths and asserts the same
outcome.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Iterable

from .. import store
from .schema import INSERT_REVISION

#: The BEFORE INSERT triggers of ``annotation_revisions`` (m002, m006) whose rules
#: :class:`RowChecks` checks set-based during a bulk import, by name: the SHA-256 of the SQL
#: text they have in ``sqlite_master`` (a migration's, never edited; held to a fresh archive's
#: by tests/test_import_checks.py), then, for each rule the trigger raises (in the order it
#: raises them), its message and the condition, over the written row ``r``, that raises it.
#: The conditions are the triggers' own, with ``NEW`` read as ``r`` (the values a BEFORE
#: trigger sees are those stored: affinity is applied first) and "the rows in the table when
#: ``r`` was inserted" as ``id < r.id`` (each row written gets ``max(id) + 1``).
CHECKED_TRIGGERS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "annotation_revisions_span": (
        "bd7753444f088baf298d904df242f3823815a4621d7035d52f6a97db9bf6ba1b",
        (("annotation_revisions: span outside the text",
          'r.start IS NOT NULL AND r."end" > coalesce('
          "(SELECT length FROM texts WHERE document = r.document), -1)"),)),
    "annotation_revisions_sequence": (
        "2e6b185f7d75d6d7f5ba37677fa331c6379d72bb03a7c5b74b9d1a94946de09a",
        (("annotation_revisions: revision must follow the last one, not dated before it",
          "r.revision > 1 AND NOT EXISTS (SELECT 1 FROM annotation_revisions p "
          "WHERE p.annotation = r.annotation AND p.revision = r.revision - 1 "
          "AND p.modified_us <= r.modified_us AND p.id < r.id)"),
         ("annotation_revisions: a revision keeps its annotation's uuid, document, layer, "
          "creator, created and reply_to",
          "r.revision > 1 AND NOT EXISTS (SELECT 1 FROM annotation_revisions p "
          "WHERE p.annotation = r.annotation AND p.revision = 1 AND p.uuid = r.uuid "
          "AND p.document = r.document AND p.layer = r.layer AND p.creator = r.creator "
          "AND p.created = r.created AND p.reply_to IS r.reply_to AND p.id < r.id)"))),
    # ("id" = NEW."id") OR ("annotation" = NEW."annotation" AND "revision" = NEW."revision"):
    # NEW."id" is -1 in a BEFORE INSERT trigger when the INSERT gives no id (the import's never
    # does), so the first half is "a row with id -1 exists" (written before r: r.id >= 1, see
    # RowChecks.set_based). The second half is never true of
    # a row written: UNIQUE (annotation, revision) stays in force and refuses such a row at the
    # insert, and Importer._insert then inserts it once more with the triggers in place.
    "annotation_revisions_no_replace": (
        "83426028c2e904a8e3291c744f087f6a8b44d2f3a2eed05415f1aa21e33d8ebc",
        (("annotation_revisions is append-only: that row exists already",
          "EXISTS (SELECT 1 FROM annotation_revisions WHERE id = -1)"),)),
    "annotation_revisions_spanless": (
        "c4e80642acf1176dec1ca2aaa8b4b9b8636ec63db3f11963392e2b53c1f1634f",
        (("annotation_revisions: only a reply, or an orphaned carried annotation, has no span",
          "r.start IS NULL AND r.reply_to IS NULL AND NOT EXISTS (SELECT 1 FROM "
          "annotation_anchoring WHERE annotation = r.annotation AND anchoring = 'orphaned')"),)),
}
#: Every trigger ``annotation_revisions`` has (stet's schema): with any other, or any of the
#: checked ones changed, an import keeps the BEFORE INSERT triggers and they fire per row.
REVISION_TRIGGERS = frozenset({*CHECKED_TRIGGERS, *store.CURRENT_STATE_TRIGGER_NAMES,
                               "annotation_revisions_no_update", "annotation_revisions_no_delete"})


class RowChecks:
    """The rules of ``annotation_revisions``' BEFORE INSERT triggers (:data:`CHECKED_TRIGGERS`),
    checked set-based over the rows a bulk import writes while the triggers are dropped,
    refusing exactly what they refuse, with the same error.

    The import runs in its own write transaction, which no other connection sees: it drops
    the triggers (:meth:`drop`), writes a batch of rows with ``executemany`` and checks them
    (:meth:`check`) before it builds the next, and creates the triggers again from the text
    they had (:meth:`restore`, in the order they were created, so they fire in the same order)
    before it commits. A failed import rolls all of it back. A refused batch raises the
    ``sqlite3.IntegrityError`` the per-row path raises: that of its first row that a trigger
    refuses, with the message of the first trigger (in firing order: the last created first)
    and of the first rule in it that refuses that row. Nothing is written: the caller rolls
    back. The constraints (NOT NULL, CHECK, UNIQUE, foreign keys) stay in force throughout;
    :meth:`refused` gives the per-row answer for a row one of them refused. What the current
    state's trigger refuses per row (a new annotation with a uuid another has) its set-based
    INSERT refuses at the end, and :meth:`refuse_current_state` finds the row and the error
    the per-row path gives, so that also comes first when it comes first per row.
    """

    def __init__(self, conn, before: int) -> None:
        self.conn, self.before = conn, before
        self.triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'annotation_revisions' ORDER BY rowid").fetchall()
        found = {name: sql for name, sql in self.triggers}
        #: whether the rules are checked here (else the BEFORE triggers stay, and fire per row):
        #: stet's triggers, and ids that go on from ``before`` one by one, from 1 at least
        self.set_based = (set(found) == REVISION_TRIGGERS and 0 <= before < 1 << 62 and all(
            hashlib.sha256(found[name].encode()).hexdigest() == sha
            for name, (sha, _) in CHECKED_TRIGGERS.items()))
        dropped = {*store.CURRENT_STATE_TRIGGER_NAMES, *(CHECKED_TRIGGERS if self.set_based else ())}
        self.dropped = [(name, sql) for name, sql in self.triggers if name in dropped]
        #: the rules in the order the per-row path applies them: the trigger created last fires
        #: first (SQLite runs a table's triggers newest first), each rule in its order
        self.rules = [rule for name, _ in reversed(self.triggers) if name in CHECKED_TRIGGERS
                      for rule in CHECKED_TRIGGERS[name][1]]
        self.any_refused = (
            "SELECT min(r.id) FROM annotation_revisions r WHERE r.id BETWEEN ? AND ? AND ("
            + " OR ".join(f"({condition})" for _, condition in self.rules) + ")")

    def drop(self) -> None:
        for name, _ in self.dropped:
            self.conn.execute(f"DROP TRIGGER {name}")

    def restore(self, names: Iterable[str] | None = None) -> None:
        """Create the dropped triggers (or those of them named) again, from their own text,
        in their order."""
        wanted = set(names) if names is not None else {name for name, _ in self.dropped}
        present = {name for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        for name, sql in self.dropped:
            if name in wanted and name not in present:
                self.conn.execute(sql)

    def check(self, first: int, last: int) -> None:
        """Refuse, as the triggers would, the rows with ids ``first`` to ``last``."""
        if not self.set_based or last < first:
            return
        (refused,) = self.conn.execute(self.any_refused, (first, last)).fetchone()
        if refused is None:
            return
        self.refuse_current_state(refused)  # an earlier row the current state refuses
        for message, condition in self.rules:
            if self.conn.execute(f"SELECT 1 FROM annotation_revisions r WHERE r.id = ? AND "
                                 f"({condition})", (refused,)).fetchone():
                raise _error(message, "SQLITE_CONSTRAINT_TRIGGER")
        raise AssertionError(f"revision row {refused}: refused by no rule")  # pragma: no cover

    def refuse_current_state(self, upto: int) -> None:
        """Raise what the current state's trigger (dropped too) refuses of the first written row
        before ``upto`` that it refuses: a revision 1 whose annotation, or whose uuid, the
        current state already has (the archive's, or one this import wrote before it), as its
        INSERT into ``annotations`` would (the primary key is checked first). Only on the
        way to a refusal, and at the end (:meth:`Importer.finish`): the query sorts."""
        found = self.conn.execute(_CURRENT_STATE_REFUSED, {"before": self.before,
                                                           "upto": upto}).fetchone()
        if found is None:
            return
        if found[1]:
            raise _error("UNIQUE constraint failed: annotations.id",
                         "SQLITE_CONSTRAINT_PRIMARYKEY")
        raise _error("UNIQUE constraint failed: annotations.uuid", "SQLITE_CONSTRAINT_UNIQUE")

    def refused(self, first: int, row: tuple, error: sqlite3.Error) -> None:
        """Raise the per-row path's error for a batch whose row ``row`` a constraint refused
        (or whose values could not be bound: ``error``), from id ``first`` on: the rows before
        it are in, it and those after it are not."""
        last = self.conn.execute(
            "SELECT coalesce(max(id), 0) FROM annotation_revisions").fetchone()[0]
        self.check(first, last)  # a row before it that a trigger refuses
        self.refuse_current_state(last + 1)  # or that the current state's trigger refuses
        self.restore(CHECKED_TRIGGERS)  # not the current state's: finish writes it
        # The row itself, per row: a BEFORE trigger or a constraint refuses it again, unless
        # the constraint was a foreign key, checked at the end of the statement, after the
        # AFTER triggers: deferred, the row goes in, and the current state's has its say.
        self.conn.execute("PRAGMA defer_foreign_keys = ON")
        try:
            self.conn.execute(INSERT_REVISION, row)
        finally:
            self.conn.execute("PRAGMA defer_foreign_keys = OFF")
        self.refuse_current_state(last + 2)
        raise error


#: The first revision row an import wrote (ids above ``:before``, below ``:upto``) that the
#: current state's trigger refuses per row, and whether for its annotation's id (else for its
#: uuid): a revision 1 of an annotation the current state has, or with a uuid it has (from the
#: archive, or from a revision 1 written before it).
_CURRENT_STATE_REFUSED = """
SELECT r.id, EXISTS (SELECT 1 FROM annotations a WHERE a.id = r.annotation)
FROM annotation_revisions r
WHERE r.id > :before AND r.id < :upto AND r.revision = 1
AND (EXISTS (SELECT 1 FROM annotations a WHERE a.id = r.annotation)
     OR EXISTS (SELECT 1 FROM annotations a WHERE a.uuid = r.uuid)
     OR r.id IN (SELECT id FROM (
         SELECT id, row_number() OVER (PARTITION BY uuid ORDER BY id) AS n
         FROM annotation_revisions WHERE id > :before AND id < :upto AND revision = 1)
         WHERE n > 1))
ORDER BY r.id LIMIT 1"""
#: Whether an import wrote a revision 1 of an annotation the archive's current state has
#: (which its trigger refuses; the set-based INSERT of :meth:`Importer.finish` writes only
#: the annotations numbered from ``:first``).
OLD_ANNOTATION_RECREATED = (
    "SELECT 1 FROM annotation_revisions r WHERE r.id > :before AND r.revision = 1 "
    "AND r.annotation < :first AND EXISTS (SELECT 1 FROM annotations a WHERE a.id = r.annotation)")
_ERROR_CODES = {"SQLITE_CONSTRAINT_TRIGGER": 1811, "SQLITE_CONSTRAINT_PRIMARYKEY": 1555,
                "SQLITE_CONSTRAINT_UNIQUE": 2067}


def _error(message: str, name: str) -> sqlite3.IntegrityError:
    """The error SQLite gives (message, code and its name), raised here for it."""
    error = sqlite3.IntegrityError(message)
    error.sqlite_errorcode, error.sqlite_errorname = _ERROR_CODES[name], name
    return error
