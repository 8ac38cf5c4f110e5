"""verify holds every row to the chain: each tampering of issue 9, done around the triggers
(dropped, the edit made, the triggers restored), is found and named; a clean archive and a
clean snapshot pass; verify reads each text once, whatever the number of revisions."""

import hashlib
import json
import sqlite3

import pytest

from stet import Archive
from stet.hashing import sha256_text
from stet.provenance import Chain
from stet.store import APPEND_ONLY


def publish(source, out, **options):
    """Publish as ``stet publish`` does: through the facade, which records the event."""
    with Archive(source, create=False) as archive:
        return archive.publish(out, **options)


@pytest.fixture
def built(tmp_path):
    """An archive made through the library: three public documents (a UTF-8 text kept as its
    raw bytes, a CRLF text kept in chunks, a binary file), a restricted one, annotations
    revised and retracted in two layers, and an import of another archive's history."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("Article 1. All human beings are born free and equal.\n")
    (folder / "b.txt").write_bytes("حقوق بشر\u200cها — آزادی\r\nline two\r\n".encode())
    (folder / "c.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "secret.txt").write_text("A witness statement, not for the public.\n")
    other = tmp_path / "other.db"
    with Archive(other) as source:
        source.ingest([folder], by="ana")
        note = source.annotate(2, layer="translation", start=0, end=4, body="rights", by="omar")
        source.revise(note["id"], body="human rights", by="omar")
        with open(tmp_path / "history.jsonl", "w") as out:
            source.export(out, fmt="jsonl", history=True)
    path = tmp_path / "archive.db"
    with Archive(path) as archive:
        archive.ingest([folder], by="ana", source="https://example.org/udhr")  # events 1-3
        archive.ingest([tmp_path / "secret.txt"], by="ana", restricted=True)  # event 4
        note = archive.annotate(1, layer="entities", start=0, end=7, body="first", by="ana")
        archive.revise(note["id"], body="second", by="reza")
        claim = archive.annotate(1, layer="claims", start=11, end=14, body="who", by="ana")
        archive.retract(claim["id"], by="ana", reason="duplicate")
        archive.annotate(4, layer="witness", start=0, end=9, body="private", by="ana")
        archive.import_([tmp_path / "history.jsonl"], by="leila")
        assert archive.verify() == []
    return str(path)


def _open(path):
    return sqlite3.connect(path, isolation_level=None)


def tamper(path, *statements, tables=APPEND_ONLY, restore=True):
    """Drop the append-only triggers of ``tables`` (and the chain's own), run the statements,
    then create the triggers again from their own SQL, as the archive had them."""
    conn = _open(path)
    names = [f"{table}_{suffix}" for table in tables
             for suffix in ("no_update", "no_delete", "no_replace")] + ["events_linear"]
    kept = [sql for (sql,) in conn.execute(
        f"SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name IN "
        f"({', '.join('?' * len(names))})", names)]
    for name in names:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute("PRAGMA ignore_check_constraints = ON")
    for sql, *params in statements:
        conn.execute(sql, *params)
    if restore:
        conn.executescript(";\n".join(kept) + ";")
    conn.close()


def problems(path, **kwargs):
    with Archive(path, readonly=True, check=False) as archive:
        return archive.verify(**kwargs)


def doc(path, doc_id):
    sha = _open(path).execute("SELECT sha256 FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
    return f"document {doc_id} (sha256 {sha[:12]})"


def seq_of(path, action, subject):
    return _open(path).execute("SELECT seq FROM events WHERE action = ? AND subject = ?",
                               (action, subject)).fetchone()[0]


# -- clean ------------------------------------------------------------------------------------


def test_clean_archive_and_snapshot_pass(built, tmp_path):
    with Archive(built) as archive:
        archive.edit(1, title="UDHR, article 1", reason="a better title")
        archive.restrict(3, reason="a binary nobody can read")
        assert archive.verify() == []
    out = tmp_path / "public.db"
    publish(built, out)
    assert problems(str(out)) == []


def test_triggers_restored_as_stet_made_them_leave_no_trace(built):
    tamper(built)
    assert problems(built) == []


# -- each tampering of the issue ------------------------------------------------------------


def test_text_rewritten_with_its_sha256_and_length(built):
    forged = "حقوق بشر — forged\nline two\n"
    tamper(built, ("UPDATE texts SET text = ?, sha256 = ?, length = ? WHERE document = 2",
                   (forged, sha256_text(forged), len(forged))))
    found = problems(built)
    assert any(p.startswith(f"{doc(built, 2)}: texts.sha256 is '{sha256_text(forged)}', its "
                            "ingest event (event 2) records text_sha256 '") for p in found), found


@pytest.mark.parametrize("column, value, message", [
    ("body", "'forged'", "does not match event {seq} (revise): revision_sha256 differ (the revision was changed)"),
    ("author", "'mallory'", "author is 'mallory', event {seq} (revise) records 'reza'"),
    ("modified", "'2020-01-01T00:00:00.000000Z'",
     "modified is '2020-01-01T00:00:00.000000Z', event {seq} (revise) records '"),
])
def test_revision_changed_in_both_tables(built, column, value, message):
    tamper(built,
           (f"UPDATE annotation_revisions SET {column} = {value} WHERE annotation = 1 AND revision = 2",),
           (f"UPDATE annotations SET {column} = {value} WHERE id = 1",))
    found = problems(built)
    expected = "annotation 1 revision 2: " + message.format(seq=seq_of(built, "revise", "annotation:1"))
    assert any(p.startswith(expected) for p in found), found
    assert not any("current state" in p for p in found)  # both tables agree with each other


def test_restriction_flipped_in_the_row(built):
    tamper(built, ("UPDATE documents SET restricted = 0 WHERE id = 4",))
    assert problems(built) == [
        f"{doc(built, 4)}: documents.restricted is 0, its ingest event (event 4) records True"]


@pytest.mark.parametrize("column, value, recorded", [
    ("title", "'Forged title'", "'a.txt'"),
    ("source", "'https://forged.example'", "'https://example.org/udhr'"),
    ("ingested_by", "'mallory'", "'ana'"),
    ("ingested_at", "'2000-01-01T00:00:00.000000Z'", None),
])
def test_document_metadata_changed(built, column, value, recorded):
    tamper(built, (f"UPDATE documents SET {column} = {value} WHERE id = 1",))
    found = problems(built)
    expected = f"{doc(built, 1)}: documents.{column} is {value}, its ingest event (event 1) records "
    assert len(found) == 1 and found[0].startswith(expected), found
    if recorded:
        assert found[0] == expected + recorded


def test_document_deleted_with_its_bytes_and_text(built):
    sha = _open(built).execute("SELECT sha256 FROM documents WHERE id = 3").fetchone()[0]
    tamper(built, ("DELETE FROM blob_chunks WHERE sha256 = ?", (sha,)),
           ("DELETE FROM blobs WHERE sha256 = ?", (sha,)),
           ("DELETE FROM texts WHERE document = 3",),
           ("DELETE FROM documents WHERE id = 3",))
    assert problems(built) == ["event 3 (ingest): document 3 does not exist"]


def test_whole_annotation_deleted(built):
    tamper(built, ("DELETE FROM annotation_revisions WHERE annotation = 1",),
           ("DELETE FROM annotations WHERE id = 1",))
    annotate, revise = seq_of(built, "annotate", "annotation:1"), seq_of(built, "revise", "annotation:1")
    assert problems(built) == [
        f"event {annotate} (annotate): annotation 1 revision 1 does not exist",
        f"event {revise} (revise): annotation 1 revision 2 does not exist"]


def test_bytes_replaced_with_a_new_blob_and_sha256(built):
    forged = b"\x00forged bytes" * 100
    new = hashlib.sha256(forged).hexdigest()
    old = _open(built).execute("SELECT sha256 FROM documents WHERE id = 3").fetchone()[0]
    tamper(built, ("INSERT INTO blobs (sha256, size, storage, chunk_count) VALUES (?, ?, 'chunks', 1)",
                   (new, len(forged))),
           ("INSERT INTO blob_chunks (sha256, seq, data) VALUES (?, 0, ?)", (new, forged)),
           ("UPDATE documents SET sha256 = ?, size = ? WHERE id = 3", (new, len(forged))))
    found = problems(built)
    assert f"document 3 (sha256 {new[:12]}): documents.sha256 is '{new}', its ingest event (event 3) records '{old}'" in found
    assert f"document 3 (sha256 {new[:12]}): documents.size is {len(forged)}, its ingest event (event 3) records 2048" in found


def test_layer_renamed(built):
    tamper(built, ("UPDATE layers SET name = 'renamed' WHERE name = 'entities'",))
    seq = seq_of(built, "layer-add", "layer:entities")
    assert problems(built) == [
        f"layer 1 ('renamed'): name is 'renamed', event {seq} (layer-add) records 'entities'",
        f"layer 1 ('renamed'): event {seq} (layer-add) names 'layer:entities'"]


def test_append_only_trigger_left_dropped(built):
    tamper(built, ("UPDATE documents SET title = title WHERE id = 1",), restore=False)
    found = problems(built)
    for table in APPEND_ONLY:
        for suffix in ("no_update", "no_delete", "no_replace"):
            assert f"schema: trigger {table}_{suffix} is missing" in found
    assert "schema: trigger events_linear is missing" in found


def test_trigger_altered_or_added(built):
    conn = _open(built)
    conn.executescript(
        "DROP TRIGGER documents_no_delete;"
        "CREATE TRIGGER documents_no_delete BEFORE DELETE ON documents BEGIN SELECT 1; END;"
        "CREATE TRIGGER rewrite AFTER INSERT ON events BEGIN SELECT 1; END;")
    conn.close()
    assert problems(built) == ["schema: trigger documents_no_delete differs from stet's",
                               "schema: trigger rewrite is not part of stet's schema"]


def test_event_with_a_duplicate_key(built):
    """Python keeps the last of two equal keys (the hash still matches), SQLite's json_extract
    and Datasette show the first: an event must be byte-identical to its canonical form."""
    details = _open(built).execute("SELECT details FROM events WHERE seq = 2").fetchone()[0]
    forged = '{"path":"/FORGED",' + details[1:]
    tamper(built, ("UPDATE events SET details = ? WHERE seq = 2", (forged,)))
    conn = _open(built)
    assert conn.execute("SELECT json_extract(details, '$.path') FROM events WHERE seq = 2").fetchone() == ("/FORGED",)
    assert problems(built) == [
        "event 2: details are not byte-identical to their canonical form (duplicate key 'path')"]


def test_event_details_not_canonical(built):
    details = _open(built).execute("SELECT details FROM events WHERE seq = 1").fetchone()[0]
    spaced = json.dumps(json.loads(details), ensure_ascii=False, sort_keys=True)  # ", " and ": "
    tamper(built, ("UPDATE events SET details = ? WHERE seq = 1", (spaced,)))
    assert problems(built) == ["event 1: details are not byte-identical to their canonical form "
                               "(key order, spacing or escapes differ)"]


def test_chunk_stored_as_text_is_reported_not_a_crash(built):
    tamper(built, ("UPDATE blob_chunks SET data = CAST(data AS TEXT) "
                   "WHERE sha256 = (SELECT sha256 FROM documents WHERE id = 2)",))
    assert problems(built) == [f"{doc(built, 2)}: raw bytes chunk 0 is stored as text, not as a BLOB"]


@pytest.mark.parametrize("statement", [
    "UPDATE documents SET size = 'big' WHERE id = 3",
    "UPDATE documents SET sha256 = x'00ff' WHERE id = 2",
    "UPDATE texts SET length = x'00', text = 3.5 WHERE document = 1",
    "UPDATE texts SET text = CAST(x'ff00fe' AS TEXT) WHERE document = 2",
    "UPDATE blobs SET chunk_count = 'many', size = 'huge'",
    "UPDATE blob_chunks SET seq = 'first', data = 12",
    "UPDATE events SET document = 'abc' WHERE seq = 2",
    "UPDATE events SET prev_hash = 5, hash = 5.5 WHERE seq = 6",
    "UPDATE events SET details = x'7b7d', time = 5 WHERE seq = 5",
    "UPDATE events SET details = '[1, 2]' WHERE seq = 3",
    "UPDATE events SET subject = 7 WHERE action = 'revise'",
    "UPDATE annotation_revisions SET start = 'zero', document = 'one' WHERE id = 1",
    "UPDATE annotation_revisions SET annotation = 'two', tags = x'00' WHERE id = 2",
    "UPDATE layers SET created = x'01', colour = 7 WHERE id = 1",
    "DELETE FROM _sqlite_migrations",
])
def test_any_value_of_any_type_is_a_problem_never_a_crash(built, statement):
    tamper(built, (statement,))
    found = problems(built)
    assert found and all(isinstance(p, str) and "\n" not in p for p in found)
    assert not any(p.startswith("verify: ") for p in found), found  # each one named


def test_imported_rows_changed(built):
    first = _open(built).execute(
        "SELECT min(id) FROM annotation_revisions WHERE document = 2").fetchone()[0]
    tamper(built, ("UPDATE annotation_revisions SET body = 'forged' WHERE id = ?", (first,)))
    seq = seq_of(built, "import", "file:history.jsonl")
    found = problems(built)
    assert any(p.startswith(f"event {seq} (import): revisions {first}-{first + 1} are not the rows it recorded")
               for p in found), found


def test_revision_written_without_an_event(built):
    columns = ("annotation, revision, uuid, document, layer, motivation, creator, author, created, "
               'modified, modified_us, status, start, "end", exact')
    conn = _open(built)
    row = list(conn.execute(f"SELECT {columns} FROM annotation_revisions WHERE annotation = 2 "
                            "AND revision = 2").fetchone())
    row[1], row[-4] = 3, "active"
    conn.execute(f"INSERT INTO annotation_revisions ({columns}) VALUES ({', '.join('?' * 15)})", row)
    conn.close()
    assert problems(built) == ["annotation 2 revision 3: no event records it (no annotate, "
                               "revise or retract event, and no import's or reanchor's rows)"]


def test_restricted_document_in_a_snapshot(built, tmp_path):
    out = str(tmp_path / "public.db")
    publish(built, out)
    with Archive(out) as snapshot:  # a restrict event chained onto the snapshot itself
        with snapshot.write() as chain:
            chain.append(actor="mallory", action="restrict", subject="document:1", document=1,
                         details={"title": "a.txt", "source": "https://example.org/udhr",
                                  "restricted": True, "reason": "x"})
        seq = chain.head()[0]
    assert problems(out) == [f"{doc(out, 1)}: restricted by event {seq} (restrict), yet in a public snapshot"]


# -- what needs an anchor kept elsewhere ----------------------------------------------------


def test_expect_head_catches_a_truncated_tail(built):
    with Archive(built) as archive:
        head = archive.head()
    anchor = (head["length"], head["head"])
    assert problems(built, expect_head=anchor) == []
    tamper(built, ("DELETE FROM events WHERE seq = ?", (head["length"],)))
    found = problems(built)
    assert found and not any("expected head" in p for p in found)  # imported rows uncovered
    anchored = problems(built, expect_head=anchor)
    message = (f"expected head: the chain has {head['length'] - 1} events, not the "
               f"{head['length']} expected (cut short, or another archive)")
    assert message in anchored and sorted(anchored) == sorted(found + [message])


def test_expect_head_catches_a_rechained_tail(built):
    with Archive(built) as archive:
        head = archive.head()
        last = list(archive.log())[-1]
    tamper(built, ("DELETE FROM events WHERE seq = ?", (head["length"],)))
    with Archive(built) as archive, archive.write() as chain:  # the same event, another time
        chain.append(**{k: last[k] for k in ("actor", "action", "subject", "document", "details")})
    assert problems(built) == []  # no local check can tell
    assert problems(built, expect_head=(head["length"], head["head"])) == [
        f"expected head: event {head['length']} has hash {Chain(_open(built)).head()[1][:16]}..., "
        f"not {head['head'][:16]}... (the chain was rewritten)"]


# -- each text read once -----------------------------------------------------------------------


class _Counting:
    """A connection that counts how many times a value at least ``size`` long (a whole text)
    crosses from SQLite into Python."""

    def __init__(self, conn, size):
        self.conn, self.size, self.crossings = conn, size, 0

    def execute(self, *args):
        return _CountingCursor(self, self.conn.execute(*args))

    def __getattr__(self, name):
        return getattr(self.conn, name)


class _CountingCursor:
    def __init__(self, owner, cursor):
        self.owner, self.cursor = owner, cursor

    def _count(self, row):
        if row is not None:
            self.owner.crossings += sum(isinstance(v, (str, bytes)) and len(v) >= self.owner.size
                                        for v in row)
        return row

    def __iter__(self):
        return (self._count(row) for row in self.cursor)

    def fetchone(self):
        return self._count(self.cursor.fetchone())

    def fetchall(self):
        return [self._count(row) for row in self.cursor.fetchall()]


def test_each_text_is_read_once_whatever_the_number_of_revisions(tmp_path):
    from stet.verify import verify

    size = 50_000
    folder = tmp_path / "long"
    folder.mkdir()
    for n in (1, 2):
        (folder / f"long{n}.txt").write_text(("آزادی\u200cهای اساسی " * size)[:size] + f" {n}\n")
    with Archive(tmp_path / "long.db") as archive:
        archive.ingest([folder], by="ana")
        for n in range(60):
            note = archive.annotate(1 + n % 2, layer="l", start=n, end=n + 5, body=str(n), by="ana")
            archive.revise(note["id"], body=f"{n}!", by="reza")
        counting = _Counting(archive.conn, size)
        assert verify(counting) == []
    assert counting.crossings == 2  # one read of each text, not one per revision (240)
