"""stet verify: clean archives pass; tampering done around the triggers is found and named."""

import json
import sqlite3

import pytest

from stet.store import APPEND_ONLY


@pytest.fixture
def filled(db_path, tmp_path, run):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("Article 1. All human beings are born free and equal.\n")
    (folder / "b.txt").write_bytes("Windows line\r\nends\r\n".encode())
    (folder / "c.bin").write_bytes(bytes(range(256)) * 8)
    assert run("ingest", folder).exit_code == 0
    return db_path


def tamper(db_path, *statements):
    """Drop every protecting trigger, run the statements, then put the triggers back exactly
    as they were: what an attacker could do, leaving the schema as stet made it."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    dropped = []
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall():
        if any(name.startswith(t + "_no_") for t in APPEND_ONLY) or name == "events_linear":
            conn.execute(f"DROP TRIGGER {name}")
            dropped.append(sql)
    for sql, *params in statements:
        conn.execute(sql, *params)
    for sql in dropped:
        conn.execute(sql)
    conn.close()


def sha_prefix(db_path, doc_id):
    return sqlite3.connect(db_path).execute("SELECT sha256 FROM documents WHERE id = ?", (doc_id,)).fetchone()[0][:12]


def test_clean_archive_passes(run, filled):
    result = run("verify")
    assert result.exit_code == 0
    assert result.stdout == "ok: 3 documents, 3 events, 0 annotation revisions\n"
    report = json.loads(run("verify", "--json").stdout)
    assert report == {"ok": True, "problems": [], "notes": [],
                      "checked": {"documents": 3, "events": 3, "annotation revisions": 0}}


def test_changed_byte_of_raw_chunk(run, filled):
    tamper(filled, ("UPDATE blob_chunks SET data = CAST(replace(CAST(data AS TEXT), 'ends', 'Ends') AS BLOB) "
                    "WHERE sha256 = (SELECT sha256 FROM documents WHERE id = 2)",))
    result = run("verify")
    assert result.exit_code == 1
    assert f"document 2 (sha256 {sha_prefix(filled, 2)}): raw bytes do not match their SHA-256" in result.stdout
    assert result.stderr == "1 problem found\n"


def test_changed_binary_chunk(run, filled):
    tamper(filled, ("UPDATE blob_chunks SET data = zeroblob(length(data)) "
                    "WHERE sha256 = (SELECT sha256 FROM documents WHERE id = 3)",))
    assert f"document 3 (sha256 {sha_prefix(filled, 3)}): raw bytes do not match" in run("verify").stdout


def test_changed_text_kept_verbatim(run, filled):
    # a.txt is UTF-8 without CR: its raw bytes are kept once, as its text
    tamper(filled, ("UPDATE texts SET text = replace(text, 'free', 'FREE') WHERE document = 1",))
    out = run("verify").stdout
    prefix = sha_prefix(filled, 1)
    assert f"document 1 (sha256 {prefix}): raw bytes do not match their SHA-256" in out
    assert f"document 1 (sha256 {prefix}): text does not match its SHA-256" in out


def test_changed_extracted_text(run, filled):
    tamper(filled, ("UPDATE texts SET text = 'Windows line\nENDS\n' WHERE document = 2",))
    result = run("verify", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == [
        f"document 2 (sha256 {sha_prefix(filled, 2)}): text does not match its SHA-256"]


def test_changed_event(run, filled):
    tamper(filled, ("UPDATE events SET actor = 'mallory' WHERE seq = 2",))
    assert run("verify").stdout.splitlines() == [
        "event 2: hash mismatch (the event was altered)",
        f"document 2 (sha256 {sha_prefix(filled, 2)}): documents.ingested_by is 'tester', "
        "its ingest event (event 2) records 'mallory'"]


def test_removed_event_and_rechained(run, filled):
    tamper(filled, ("DELETE FROM events WHERE seq = 2",))
    out = run("verify").stdout.splitlines()
    assert out == ["event 2: missing (the chain jumps to 3)",
                   "event 3: prev_hash does not match the hash of event 2",
                   f"document 2 (sha256 {sha_prefix(filled, 2)}): no ingest event records it"]


def test_deleted_document_bytes(run, filled):
    tamper(filled, ("DELETE FROM blob_chunks WHERE sha256 = (SELECT sha256 FROM documents WHERE id = 3) AND seq = 0",))
    out = run("verify").stdout
    assert f"document 3 (sha256 {sha_prefix(filled, 3)}): raw bytes incomplete" in out


def test_every_problem_reported_at_once(run, filled):
    tamper(filled,
           ("UPDATE texts SET text = 'x' WHERE document = 2",),
           ("UPDATE events SET details = '{}' WHERE seq = 3",))
    result = run("verify")
    assert result.exit_code == 1
    # event 3; document 2's text hash and length; document 3 against its emptied event
    assert len(result.stdout.splitlines()) == 4, result.stdout
    assert f"document 3 (sha256 {sha_prefix(filled, 3)}): its ingest event (event 3) records no sha256, size" in result.stdout
    assert result.stderr == "4 problems found\n"


def test_reading_commands_write_nothing(run, filled, tmp_path):
    """verify, documents, show, text and log open the file read-only: a published snapshot
    (not in WAL mode) keeps its SHA-256 however often it is checked."""
    import hashlib
    out = tmp_path / "public.db"
    assert run("publish", out).exit_code == 0
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    for command in (["verify"], ["documents"], ["show", "1"], ["text", "1"], ["log"]):
        result = run(*command, db=str(out))
        assert result.exit_code == 0, (command, result.stderr)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("public")) == ["public.db"]


def test_verify_refuses_a_file_that_is_not_an_archive(run, tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    result = run("verify", db=str(other))
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {other} is not a stet archive, or one that needs migrating "
                             "(a write command migrates it)\n")
