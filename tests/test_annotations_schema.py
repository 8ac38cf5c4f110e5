"""One source for each fact: the annotation column list, the SQL generated from it, the
state at an instant, and the import's bounded text cache."""

from __future__ import annotations

import re
import sqlite3

import sqlite_utils

from stet import Archive, store
from stet.annotations import history, importer, query, schema
from stet.annotations.importer import Texts


def _tokens(sql: str) -> str:
    """SQL with white space normalized (the released text is wrapped by hand)."""
    sql = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r"\( ", "(", re.sub(r" \)", ")", sql))


def fresh() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store.migrate(sqlite_utils.Database(conn))
    return conn


def test_the_tables_hold_the_column_list():
    conn = fresh()
    current = [row[1] for row in conn.execute("PRAGMA table_info(annotations)")]
    revisions = [row[1] for row in conn.execute("PRAGMA table_info(annotation_revisions)")]
    assert tuple(current) == schema.CURRENT_COLUMNS
    assert tuple(revisions) == ("id", *schema.REVISION_COLUMNS)
    assert set(schema.IDENTITY) | set(schema.UPDATED) == set(schema.CURRENT_COLUMNS)


def test_the_released_triggers_are_the_generated_ones():
    """The migration's text is never edited; it says what the column list generates."""
    assert _tokens(store.CURRENT_STATE_TRIGGERS) == _tokens(schema.current_state_triggers())
    conn = fresh()
    stored = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                               "AND name LIKE 'annotation_revisions_c%'"))
    assert set(stored) == set(store.CURRENT_STATE_TRIGGER_NAMES)
    assert _tokens(";\n".join(stored[n] for n in store.CURRENT_STATE_TRIGGER_NAMES) + ";") \
        == _tokens(schema.current_state_triggers())


def test_the_json_fields_and_revision_order_are_unchanged():
    """Both are written elsewhere (the JSON's key order; every import event's row hash)."""
    assert schema.FIELDS == (
        "id", "uuid", "document", "layer", "reply_to", "start", "end", "exact", "prefix",
        "suffix", "body", "motivation", "tags", "creator", "author", "created", "modified",
        "revision", "status", "reason")
    assert schema.REVISION_COLUMNS == (
        "annotation", "revision", "uuid", "document", "layer", "reply_to", "start", "end",
        "exact", "prefix", "suffix", "body", "motivation", "tags", "creator", "author",
        "created", "modified", "modified_us", "status", "reason")
    assert schema.MOTIVATIONS[-1] == "correcting" and len(set(schema.MOTIVATIONS)) == 14


#: The state at an instant as the plugin and the canned query wrote it before state_at.
CORRELATED = """SELECT annotation FROM annotation_revisions r
WHERE modified_us <= :at AND status = 'active'
  AND revision = (SELECT max(revision) FROM annotation_revisions
                  WHERE annotation = r.annotation AND modified_us <= :at)
ORDER BY annotation"""


def test_state_at_is_the_latest_revision_at_or_before_the_instant(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("one two three four five six seven\n", encoding="utf-8")
    with Archive(tmp_path / "a.db") as archive:
        [doc] = archive.ingest([path], by="x")
        made = [archive.annotate(doc["id"], layer="l", quote=w, by="x")
                for w in ("one", "three", "five")]
        archive.revise(made[0]["id"], body="later", by="y")
        archive.retract(made[1]["id"], by="y")
        conn = archive.conn
        instants = [t for (t,) in conn.execute(
            "SELECT modified_us FROM annotation_revisions ORDER BY id")]
        for at in [instants[0] - 1, *instants, instants[-1] + 1]:
            built = [a for (a,) in conn.execute(
                f"SELECT annotation FROM ({schema.state_at(':at')}) "
                "WHERE status = 'active' ORDER BY annotation", {"at": at})]
            assert built == [a for (a,) in conn.execute(CORRELATED, {"at": at})]
            assert [a["id"] for a in query(conn, at=at)] == built
            assert [a["id"] for a in query(conn, at=at, document=doc["id"])] == built


def test_query_and_history_stream(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("one two\n", encoding="utf-8")
    with Archive(tmp_path / "a.db") as archive:
        [doc] = archive.ingest([path], by="x")
        made = archive.annotate(doc["id"], layer="l", quote="two", by="x")
        for answer in (query(archive.conn), query(archive.conn, at=made["modified"]),
                       history(archive.conn, made["id"])):
            assert iter(answer) is answer  # an iterator over the cursor, not a list
            assert next(answer)["id"] == made["id"]


def test_the_import_keeps_few_texts(tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(4):
        (folder / f"d{n}.txt").write_text(f"document {n} " + "x" * 100 + "\n", encoding="utf-8")
    with Archive(tmp_path / "a.db") as archive:
        docs = archive.ingest([folder], by="x")
        shas = [d["sha256"] for d in docs]
        texts = Texts(archive.conn, budget=250)  # two texts of 113 code points
        for sha in shas + shas[:1]:
            assert texts[sha][1].startswith("document ")
            assert len(texts.held) <= 2 and texts.size <= 250
        assert list(texts.held) == [shas[3], shas[0]]
        tiny = Texts(archive.conn, budget=1)  # always the one in use
        assert tiny[shas[1]][0] == docs[1]["id"] and len(tiny.held) == 1
        # an import over every document with room for one text at a time
        for d in docs:
            archive.annotate(d["id"], layer="l", quote=f"document {d['id'] - 1} ", by="x")
        out = tmp_path / "all.jsonl"
        with open(out, "w", encoding="utf-8") as stream:
            archive.export(stream, fmt="jsonl")
    monkeypatch.setattr(importer, "TEXT_BUDGET", 1)
    with Archive(tmp_path / "b.db") as other:
        other.ingest([folder], by="x")
        [result] = other.import_([out], by="x")
        assert result["annotations"] == 4
        assert other.verify() == []
