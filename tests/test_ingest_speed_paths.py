"""Issue 14's ingest paths: UTF-8 cut inside a character at an edge, binary sniffed cheaply,
texts stored as their UTF-8, large files written once (the rollback journal instead of the
WAL), and what a crash in the middle of that leaves."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import stet.extract.decoding as decoding
from stet import Archive
from stet.extract import detect_media_type, extract
from stet.ingest import journal as journal_module
from stet.ingest import readahead

REST = "سلام دنیا، این یک شهادت است.\nLet it stand.\n"


def ingest_all_ways(tmp_path, files, monkeypatch):
    """Ingest ``files`` ({name: bytes}) in one process, in the read-ahead worker and in a pool
    of two; yield (how, archive, results by name) for each."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    monkeypatch.setattr(readahead, "available", lambda: True)
    monkeypatch.setattr("stet.ingest.READ_AHEAD_MIN_FILES", 1)
    for how, workers in (("in-process", 0), ("read-ahead", None), ("pool", 2)):
        with Archive(tmp_path / f"{how}.db") as archive:
            results = archive.ingest([folder], by="t", workers=workers)
            yield how, archive, {os.path.basename(r["path"]): r for r in results}


# -- UTF-8 cut inside a character at its start or end ----------------------------------------

CUT = {
    # "ب" is d8 a8: its first byte cut off leaves a8
    "start.txt": ("ب" + REST).encode()[1:],
    # "€" is e2 82 ac: cut after two bytes
    "end.txt": (REST + "€").encode()[:-1],
    # an emoji (f0 9f 98 80) cut after its first byte at the start, "ی" (db 8c) cut at the end
    "both.txt": ("😀" + REST + "ی").encode()[1:-1],
    # CR LF line ends: normalized as ever, the fragment still one U+FFFD
    "crlf.txt": ("ب" + REST.replace("\n", "\r\n")).encode()[1:],
}
EXPECTED = {
    "start.txt": ("\ufffd" + REST, "the first byte (a8) is the end of a character whose "
                  "beginning is missing"),
    "end.txt": (REST + "\ufffd", "the last 2 bytes (e2 82) are the beginning of a character cut short"),
    "both.txt": ("\ufffd" + REST + "\ufffd", "the first 3 bytes (9f 98 80) are the end of a "
                 "character whose beginning is missing and the last byte (db) is the beginning "
                 "of a character cut short"),
    "crlf.txt": ("\ufffd" + REST, "the first byte (a8) is the end of a character whose "
                 "beginning is missing"),
}


def test_a_cut_character_at_an_edge_is_still_utf8_text(tmp_path, monkeypatch):
    """Each file is text/plain in UTF-8; its text is the rest decoded, each cut fragment one
    U+FFFD; a warning names the fragment's bytes; the raw bytes are kept exactly."""
    for how, archive, results in ingest_all_ways(tmp_path, CUT, monkeypatch):
        for name, data in CUT.items():
            record = results[name]
            text, where = EXPECTED[name]
            assert record["status"] == "new" and record["media_type"] == "text/plain", (how, name)
            assert record["sha256"] == hashlib.sha256(data).hexdigest()
            warning = (f"UTF-8 cut inside a character: {where}; each such fragment is one U+FFFD "
                       "in the text, the bytes are kept as received")
            assert record["warning"] == warning, (how, name)
            doc = archive.document(record["id"])
            assert doc["encoding"] == "utf-8" and doc["warning"] == warning
            assert archive.text(record["id"]) == text, (how, name)
            assert doc["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
            assert doc["text_length"] == len(text)
            raw = b"".join(archive.raw(record["id"]))
            assert raw == data and hashlib.sha256(raw).hexdigest() == record["sha256"], (how, name)
            storage = archive.conn.execute("SELECT storage FROM blobs WHERE sha256 = ?",
                                           (record["sha256"],)).fetchone()[0]
            assert storage == "chunks"  # the bytes are not the text's UTF-8: kept apart
        events = {e["document"]: e for e in archive.log() if e["action"] == "ingest"}
        assert events[results["start.txt"]["id"]]["details"]["warning"] == results["start.txt"]["warning"]
        assert archive.verify() == [], how


def test_cut_edges_only_where_a_character_was_cut():
    assert decoding.cut_edges("abc".encode()) == (0, 0)
    assert decoding.cut_edges(b"\xa8abc") == (1, 0)
    assert decoding.cut_edges(b"\x9f\x98\x80abc") == (3, 0)
    assert decoding.cut_edges(b"\x80\x80\x80\x80abc") == (0, 0)  # four: no character was cut
    assert decoding.cut_edges(b"abc\xf0\x9f\x98") == (0, 3)
    assert decoding.cut_edges(b"abc\xe0\x80") == (0, 0)  # e0 80 begins no character
    assert decoding.cut_edges(b"abc\xc0") == (0, 0)  # nor does c0
    assert decoding.cut_edges(b"\xa8") == (1, 0)
    assert decoding.decode_text(b"\xa8") == ("\ufffd", "utf-8", decoding.cut_warning(b"\xa8", 1, 0))
    # a UTF-8 BOM, then a character cut at the end
    text, encoding, warning = decoding.decode_text(b"\xef\xbb\xbfhello \xd8")
    assert (text, encoding) == ("hello \ufffd", "utf-8-sig") and "the last byte (d8)" in warning
    # whole and valid: no warning
    assert decoding.decode_text(REST.encode()) == (REST, "utf-8", None)


def test_invalid_utf8_inside_still_takes_the_legacy_path(monkeypatch):
    """Bytes that are not UTF-8 in the middle are no cut character: charset-normalizer's
    detection, as before."""
    text = ("Le présent rapport décrit les réunions tenues à Genève en août, "
            "où les témoins ont été entendus. ") * 4
    decoded, encoding, warning = decoding.decode_text(text.encode("cp1252"))
    assert decoded == text and encoding != "utf-8" and warning is None
    extraction = extract(("ب" + REST).encode()[1:], "text/plain")
    assert not extraction.verbatim and extraction.text.startswith("\ufffd")


def test_binary_is_sniffed_without_the_slow_detection(monkeypatch):
    """Binary is told from text by a NUL byte or by its control characters, before any
    encoding detection; a head cut inside a character at either end is text without it."""
    def refuse(*args, **kwargs):
        raise AssertionError("charset-normalizer was asked")

    monkeypatch.setattr(decoding.charset_normalizer, "from_bytes", refuse)
    noise = os.urandom(8192).replace(b"\x00", b"\x01")  # no NUL: told by its controls
    assert detect_media_type(noise, "x.dat") == "application/octet-stream"
    assert detect_media_type(os.urandom(8192), "x.dat") == "application/octet-stream"
    head = ("😀" + REST * 300).encode()[1:8192]  # cut at both ends of the sample
    assert detect_media_type(head, "x.dat") == "text/plain"


def test_texts_that_are_not_the_bytes_are_stored_as_their_utf8(tmp_path, monkeypatch):
    """CR LF line ends and a legacy encoding: the text travels and is stored as its UTF-8
    bytes; the archive holds the same text as strings would have given."""
    french = ("Le présent rapport décrit les réunions tenues à Genève, où les témoins ont été "
              "entendus. ") * 4
    files = {"crlf.txt": "ligne un\r\nلا\r\n".encode(), "fr.txt": french.encode("cp1252")}
    for how, archive, results in ingest_all_ways(tmp_path, files, monkeypatch):
        assert archive.text(results["crlf.txt"]["id"]) == "ligne un\nلا\n", how
        assert archive.text(results["fr.txt"]["id"]) == french, how
        types = archive.conn.execute("SELECT DISTINCT typeof(text) FROM texts").fetchall()
        assert types == [("text",)]
        assert archive.verify() == [], how


# -- large files: written once ---------------------------------------------------------------


def write_random(path, mebibytes):
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(mebibytes):
            block = os.urandom(1 << 20)
            out.write(block)
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def large(tmp_path):
    path = tmp_path / "in" / "large.bin"
    path.parent.mkdir()
    return path, write_random(path, 48)


@pytest.mark.parametrize("workers", [0, None])
def test_large_file_written_once_byte_exact(tmp_path, large, monkeypatch, workers):
    """A 48 MiB file goes in with the rollback journal (written once), the archive is in WAL
    mode again after, nothing is left beside it, the bytes come back exactly."""
    path, sha = large
    (path.parent / "small.txt").write_text("a small file after it\n")
    switched = []
    real_large = journal_module.Journal.large
    monkeypatch.setattr(journal_module.Journal, "large",
                        lambda self, size: switched.append(real_large(self, size)) or switched[-1])
    db = tmp_path / "a.db"
    with Archive(db) as archive:
        results = archive.ingest([path.parent], by="t", workers=workers)
        assert switched == [True]
        assert [r["status"] for r in results] == ["new", "new"]
        assert results[0]["sha256"] == sha
        assert archive.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        digest = hashlib.sha256()
        for block in archive.raw(results[0]["id"]):
            digest.update(block)
        assert digest.hexdigest() == sha
        assert archive.verify() == []
        (again,) = archive.ingest([path], by="t", workers=workers)
        assert again["status"] == "duplicate"
    assert not os.path.exists(f"{db}-journal")
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_large_file_through_the_wal_when_another_connection_is_open(tmp_path, large):
    """Leaving WAL mode needs the archive to itself: with a reader connected, the file goes
    through the WAL as before, and the reader is never disturbed."""
    path, sha = large
    db = tmp_path / "a.db"
    with Archive(db) as archive:
        archive.ingest([tmp_path / "none"], by="t")
        reader = sqlite3.connect(db)
        reader.execute("SELECT count(*) FROM documents").fetchone()
        (result,) = archive.ingest([path], by="t")
        assert result["status"] == "new" and result["sha256"] == sha
        assert archive.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reader.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
        reader.close()
        assert archive.verify() == []


def test_large_file_changed_while_written_once_is_rolled_back(tmp_path, large, monkeypatch):
    """A large file whose bytes are not the ones prepared (here: its hash as prepared is
    wrong) is an error; its transaction, on the rollback journal, leaves nothing."""
    path, _ = large
    import stet.ingest.rows as rows

    real_stream = rows.stream_blob

    def tampered(conn, item):
        with open(path, "r+b") as out:  # the file changes after it was hashed
            out.seek(40 << 20)
            out.write(b"changed")
        return real_stream(conn, item)

    monkeypatch.setattr(rows, "stream_blob", tampered)
    with Archive(tmp_path / "a.db") as archive:
        (result,) = archive.ingest([path], by="t", workers=0)
        assert result["status"] == "error" and "changed while it was being ingested" in result["error"]
        for table in ("documents", "blobs", "blob_chunks", "events"):
            assert archive.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        assert archive.verify() == []


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import stet.ingest.rows as rows
    from stet import Archive

    db, path, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    real = rows.stream_blob

    def stream_blob(conn, item):
        class Killing:
            count = 0
            def execute(self, sql, args=()):
                if sql.startswith("INSERT INTO blob_chunks"):
                    Killing.count += 1
                    if Killing.count == after:
                        os.kill(os.getpid(), signal.SIGKILL)
                return conn.execute(sql, args)
        return real(Killing(), item)

    rows.stream_blob = stream_blob
    with Archive(db) as archive:
        archive.ingest([sys.argv[4]], by="crash-test", workers=0)
        print(archive.conn.execute("PRAGMA journal_mode").fetchone()[0])
    """
)


@pytest.mark.slow
def test_killed_while_a_large_file_is_written_once(tmp_path, large):
    """kill -9 halfway through a large file's chunks, with small files committed before it:
    the hot journal is rolled back by the next connection that may write, every document is
    whole, and a re-run completes the folder."""
    path, sha = large
    for i in range(5):
        (path.parent / f"a{i}.txt").write_text(f"small file {i}\n")  # before large.bin
    db = str(tmp_path / "archive.db")
    killed = subprocess.run([sys.executable, "-c", KILLED, db, str(path), "20", str(path.parent)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert os.path.exists(db + "-journal")  # hot: the transaction was under way
    with Archive(db) as archive:  # rolls it back
        assert archive.verify() == []
        assert archive.conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 5
        assert archive.conn.execute("SELECT count(*) FROM blob_chunks").fetchone()[0] == 0
        assert archive.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    done = subprocess.run([sys.executable, "-c", KILLED, db, str(path), "0", str(path.parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wal"
    with Archive(db) as archive:
        assert archive.verify() == []
        statuses = [e["action"] for e in archive.log()]
        assert statuses.count("ingest") == 6 and statuses.count("ingest-duplicate") == 5
        doc = archive.conn.execute("SELECT id FROM documents WHERE sha256 = ?", (sha,)).fetchone()[0]
        digest = hashlib.sha256()
        for block in archive.raw(doc):
            digest.update(block)
        assert digest.hexdigest() == sha
