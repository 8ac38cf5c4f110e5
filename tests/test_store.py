"""The database itself refuses to rewrite history, whoever asks."""

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stet import Archive
from stet.hashing import canonical_json
from stet.store import APPEND_ONLY, GENESIS_HASH


@pytest.fixture
def filled(db_path, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("Article 1. All human beings are born free.")
    (tmp_path / "in" / "b.bin").write_bytes(bytes(range(256)))
    with Archive(db_path) as archive:
        archive.ingest([tmp_path / "in"], by="ana")
        archive.add_user("ana", role="archivist", password="correct horse", by="ana")
        archive.create_token("ana", by="ana")
        conn = archive.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO layers (name, created_by, created) VALUES ('entities', 'ana', '2026-01-01T00:00:00.000000Z')")
        conn.execute(
            "INSERT INTO annotation_revisions (annotation, revision, uuid, document, layer, start, \"end\", "
            "exact, prefix, suffix, body, motivation, creator, author, created, modified, modified_us, status) "
            "VALUES (1, 1, 'u-1', 1, 1, 0, 7, 'Article', '', ' 1.', 'a heading', 'commenting', 'ana', 'ana', "
            "'2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1767225600000000, 'active')")
        conn.execute("COMMIT")
        (tmp_path / "a2.txt").write_text("Article 1. All human beings are born free and equal.")
        archive.ingest([tmp_path / "a2.txt"], by="ana", supersedes=1)  # carries annotation 1
    return db_path


# blob_objects has rows only in a store-backed archive: tests/test_store_objects.py
@pytest.mark.parametrize("table", [t for t in APPEND_ONLY if t != "blob_objects"])
def test_raw_connection_cannot_update_or_delete(filled, table):
    conn = sqlite3.connect(filled)
    count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    assert count > 0
    column = conn.execute(f"SELECT name FROM pragma_table_info('{table}') LIMIT 1").fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: UPDATE refused"):
        conn.execute(f'UPDATE {table} SET "{column}" = "{column}"')
    with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: DELETE refused"):
        conn.execute(f"DELETE FROM {table}")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM {table}")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count


def test_events_must_extend_the_chain(filled):
    conn = sqlite3.connect(filled)
    seq, head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    insert = ("INSERT INTO events (seq, time, actor, action, details, prev_hash, hash) "
              "VALUES (?, '2026-01-01T00:00:00.000000Z', 'x', 'forge', '{}', ?, ?)")
    with pytest.raises(sqlite3.IntegrityError, match="prev_hash must be the hash of the last event"):
        conn.execute(insert, (seq + 1, GENESIS_HASH, "f" * 64))
    with pytest.raises(sqlite3.IntegrityError, match="seq must follow the last event"):
        conn.execute(insert, (seq + 5, head, "f" * 64))


def test_revision_span_and_sequence_enforced_by_the_database(filled):
    conn = sqlite3.connect(filled)
    columns = ('annotation, revision, uuid, document, layer, start, "end", exact, body, motivation, '
               "creator, author, created, modified, modified_us, status")
    base = [1, 2, "u-1", 1, 1, 0, 7, "Article", "b", "commenting", "ana", "ana",
            "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z", 1767312000000000, "active"]
    sql = f"INSERT INTO annotation_revisions ({columns}) VALUES ({', '.join('?' * 16)})"
    wrong_exact = list(base)
    wrong_exact[7] = "Articl"
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        conn.execute(sql, wrong_exact)
    outside = list(base)
    outside[5:8] = [40, 4000, "x" * 3960]
    with pytest.raises(sqlite3.IntegrityError, match="span outside the text"):
        conn.execute(sql, outside)
    skipped = list(base)
    skipped[1] = 3
    with pytest.raises(sqlite3.IntegrityError, match="revision must follow the last one"):
        conn.execute(sql, skipped)
    moved = list(base)
    moved[3] = 2
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(sql, moved)
    empty = list(base)
    empty[6] = 0
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(sql, empty)


def test_verbatim_text_must_be_the_raw_bytes(filled):
    """a.txt's bytes are kept as its text: another text for it is refused (and any text for
    a document that has one already)."""
    conn = sqlite3.connect(filled)
    sql = ("INSERT INTO texts (document, sha256, length, text, extractor, extractor_version) "
           "VALUES (?, ?, 4, 'abcd', 'x', '1')")
    with pytest.raises(sqlite3.IntegrityError, match="texts is append-only: that row exists already"):
        conn.execute(sql, (1, "0" * 64))
    conn.execute("INSERT INTO blobs (sha256, size, storage, chunk_count) VALUES (?, 4, 'text', 0)", ("a" * 64,))
    conn.execute("INSERT INTO documents (id, sha256, filename, media_type, size, ingested_by, ingested_at) "
                 "VALUES (99, ?, 'n.txt', 'text/plain', 4, 'x', '2026-01-01T00:00:00.000000Z')", ("a" * 64,))
    with pytest.raises(sqlite3.IntegrityError, match="raw bytes stored as text must be the text"):
        conn.execute(sql, (99, "b" * 64))


def test_pragmas_and_migrations(filled):
    with Archive(filled) as archive:
        conn = archive.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
        assert names[:2] == ["m001_core", "m002_annotations"]
    with Archive(filled) as again:  # opening again applies nothing twice
        assert again.conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == len(names)


def test_current_state_follows_revisions(filled):
    conn = sqlite3.connect(filled)
    assert conn.execute('SELECT id, start, "end", body, revision FROM annotations').fetchall() == [
        (1, 0, 7, "a heading", 1), (2, 0, 7, "a heading", 1)]  # 2: carried to a new version


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=15))
def test_canonical_json_is_the_standard_librarys(value):
    """Event hashes are over canonical JSON: orjson's and the standard library's agree on
    every value events hold (no floats), so either could recompute them."""
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False)
    assert canonical_json({"big": 2**70}) == '{"big":1180591620717411303424}'


def test_background_checkpoints_copy_the_wal_and_restore_the_setting(tmp_path):
    from stet.store import background_checkpoints
    with Archive(tmp_path / "a.db") as archive:
        conn = archive.conn
        with background_checkpoints(conn, interval=0.001):
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
            for i in range(50):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO layers (name, created_by, created) VALUES (?, 'x', 'y')",
                             (f"layer {i}",))
                conn.execute("COMMIT")
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        # the thread's last round ran after the last commit: the database file itself, read
        # without its WAL (immutable=1), already holds every row
        main_file = sqlite3.connect(f"file:{tmp_path / 'a.db'}?immutable=1", uri=True)
        assert main_file.execute("SELECT count(*) FROM layers").fetchone()[0] == 50
        main_file.close()
    check = sqlite3.connect(tmp_path / "a.db")
    assert check.execute("SELECT count(*) FROM layers").fetchone()[0] == 50
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_rare_events_are_found_through_their_partial_indexes(tmp_path):
    """history (who imported a revision) and every annotate (where a layer moved) read the
    import and layer-move events: through partial indexes, not a scan of every event."""
    from stet import Archive
    from stet.annotations.layers import moves
    from stet.annotations.model import _IMPORTS
    from stet.annotations.schema import LAYER_MOVES

    with Archive(tmp_path / "a.db") as archive:
        conn = archive.conn
        assert moves(conn) == {}
        layer_sql = ("SELECT seq FROM events WHERE action IN "
                     f"({', '.join(repr(a) for a in LAYER_MOVES)})")
        plans = [" ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
                 for sql in (layer_sql, _IMPORTS + "SELECT * FROM imports")]
    assert "USING INDEX events_layer_moves" in plans[0] or "USING COVERING INDEX events_layer_moves" in plans[0]
    assert "events_imports" in plans[1]


def test_a_writer_waits_while_the_archive_is_in_the_rollback_journal(tmp_path):
    """A large file is written once, in the rollback journal (stet.ingest.journal); another
    writer opening the archive meanwhile waits for it, as for any lock, instead of failing
    at once on the change back to WAL."""
    import threading

    from stet import store

    path = str(tmp_path / "j.db")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("PRAGMA journal_mode = DELETE")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    done = threading.Event()

    def release():
        done.wait(5)  # released once the writer below is waiting
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    timer = threading.Timer(0.2, done.set)
    timer.start()
    db = store.connect(path)
    thread.join()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    db.conn.close()
