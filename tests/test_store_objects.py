"""Raw bytes in an S3-compatible object store (issue 15), against a real S3 server (SeaweedFS,
tests/s3server.py): ``stet store set/migrate/gc``, ingest into a store-backed archive,
reading back (``stet text``, ``stet raw``, the page's download), ``verify`` streaming every
object and naming what is missing or altered, and a crash mid-ingest leaving only objects
nothing refers to."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from stet import Archive
from stet.cli import cli


def stet(*args, check=True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if check:
        assert result.exit_code == 0, result.output
    return result


def make_pdf(path):
    from fpdf import FPDF
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Witness statement, page one.")
    pdf.output(str(path))


@pytest.fixture
def stored(tmp_path, s3):
    """An archive whose new bytes go to the test's bucket, with a text and a PDF in it."""
    db = tmp_path / "archive.db"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "statement.txt").write_text("The statement, as given on 3 May.\n")
    (folder / "binary.bin").write_bytes(bytes(range(256)) * 40)
    make_pdf(folder / "report.pdf")
    stet("store", "set", s3.url, "--db", db)
    stet("ingest", "-s", folder, "--db", db)
    return db


def _keys(s3, under="archive/"):
    return s3.keys(s3.name, under)


def test_ingest_puts_every_raw_byte_in_the_store(stored, s3):
    conn = sqlite3.connect(stored)
    assert conn.execute("SELECT count(*) FROM blob_chunks").fetchone()[0] == 0
    rows = conn.execute("SELECT d.id, o.key, o.length, d.size FROM documents d "
                        "JOIN blob_objects o ON o.sha256 = d.sha256").fetchall()
    assert len(rows) == 3 and all(length == size for _, _, length, size in rows)
    # the three small files of one batch are one pack: one request, not three
    assert len({key for _, key, _, _ in rows}) == 1
    keys = _keys(s3)
    assert rows[0][1] in keys and "archive/stet-archive.json" in keys
    # no raw byte in the file: the archive file does not hold the binary's bytes
    assert (bytes(range(256)) * 4) not in stored.read_bytes()
    # its ingest event says where
    details = json.loads(conn.execute("SELECT details FROM events WHERE action = 'ingest' "
                                      "ORDER BY seq LIMIT 1").fetchone()[0])
    assert details["store"] == s3.url and details["object"]["key"] == rows[0][1]


def test_text_raw_and_verify_read_from_the_store(stored, s3, tmp_path):
    with Archive(stored) as archive:
        docs = {d["filename"]: d for d in archive.documents()}
        assert archive.text(docs["statement.txt"]["id"]) == "The statement, as given on 3 May.\n"
        assert b"".join(archive.raw(docs["binary.bin"]["id"])) == bytes(range(256)) * 40
        pdf = b"".join(archive.raw(docs["report.pdf"]["id"]))
        assert hashlib.sha256(pdf).hexdigest() == docs["report.pdf"]["sha256"]
        assert "Witness statement" in archive.text(docs["report.pdf"]["id"])
    result = stet("verify", "--db", stored)
    assert result.output.startswith("ok:")
    result = stet("store", "show", "--json", "--db", stored)
    status = json.loads(result.output)
    assert status["store"] == s3.url and status["in_stores"]["blobs"] == 3
    assert status["in_file"]["blobs"] == 0


def test_the_document_page_downloads_from_the_store(stored, s3):
    import asyncio
    from stet.serve import make_datasette
    ds = make_datasette(stored)

    async def fetch():
        with Archive(stored) as archive:
            doc = next(d for d in archive.documents() if d["filename"] == "binary.bin")
        return await ds.client.get(f"/-/documents/{doc['id']}/raw")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert response.content == bytes(range(256)) * 40


def test_verify_names_a_missing_and_an_altered_object(tmp_path, s3):
    db = tmp_path / "archive.db"
    stet("store", "set", s3.url, "--db", db)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 << 20))  # a large file: an object of its own
    small = tmp_path / "small.txt"
    small.write_text("a small statement\n")
    stet("ingest", "-s", big, "--db", db)
    stet("ingest", "-s", small, "--db", db)
    conn = sqlite3.connect(db)
    placed = dict(conn.execute("SELECT d.filename, o.key FROM documents d "
                               "JOIN blob_objects o ON o.sha256 = d.sha256"))
    assert placed["big.bin"].split("/")[1] == "objects"
    client = s3.client()
    client.delete_object(Bucket=s3.name, Key=placed["big.bin"])
    pack = client.get_object(Bucket=s3.name, Key=placed["small.txt"])["Body"].read()
    client.put_object(Bucket=s3.name, Key=placed["small.txt"], Body=pack.replace(b"small", b"SMALL"))
    result = stet("verify", "--db", db, check=False)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("document 1 ") and "missing from the store" in line for line in lines)
    assert any(line.startswith("document 2 ") and "altered in the store" in line for line in lines)


def test_a_crash_mid_ingest_leaves_only_unreferenced_objects(tmp_path, s3):
    """kill -9 between an object's write and its rows' commit: the archive is as before, the
    object is noted by verify and listed (then removed) by gc."""
    db = tmp_path / "archive.db"
    stet("store", "set", s3.url, "--db", db)
    (tmp_path / "doc.txt").write_text("written, never committed\n")
    script = (
        "import os, sys\n"
        "from stet.ingest import rows\n"
        "written = rows.Plan.execute\n"
        "def crash(self, conn):\n"
        "    written(self, conn)  # the object confirmed, the rows written, not committed\n"
        "    os.kill(os.getpid(), 9)\n"
        "rows.Plan.execute = crash\n"
        "from stet.cli import cli\n"
        "cli(['ingest', '-s', sys.argv[1], '--db', sys.argv[2]])\n")
    env = {**os.environ}
    process = subprocess.run([sys.executable, "-c", script, str(tmp_path / "doc.txt"), str(db)],
                             env=env, cwd=tmp_path, capture_output=True)
    assert process.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
    conn.close()
    packs = [k for k in _keys(s3) if "/packs/" in k]
    assert len(packs) == 1  # written and confirmed, then the process died
    result = json.loads(stet("verify", "--json", "--db", db).output)
    assert result["ok"] and result["problems"] == []  # sound: an unreferenced object is a note
    assert len(result["notes"]) == 1 and packs[0] in result["notes"][0]
    before = db.read_bytes()
    result = stet("store", "gc", "--dry-run", "--db", db)
    assert packs[0] in result.output
    assert packs[0] in _keys(s3)
    assert db.read_bytes() == before  # a dry run reads only
    stet("store", "gc", "--db", db)
    assert packs[0] not in _keys(s3)
    # and the file ingests again, as new
    stet("ingest", "-s", tmp_path / "doc.txt", "--db", db)
    assert stet("verify", "--db", db).output.startswith("ok:")


def test_migrate_moves_the_bytes_out_of_the_file(tmp_path, s3):
    db = tmp_path / "archive.db"
    folder = tmp_path / "in"
    folder.mkdir()
    marker = b"MIGRATE-ME-" * 1000
    for i in range(5):
        (folder / f"b{i}.bin").write_bytes(marker + bytes([0xf8 + i]) * 5000)  # not UTF-8
    (folder / "large.bin").write_bytes(os.urandom(33 << 20))
    (folder / "plain.txt").write_text("a plain text: kept as its text\n")
    stet("ingest", "-s", folder, "--db", db)
    before = os.path.getsize(db)
    assert marker in db.read_bytes()
    stet("store", "set", s3.url, "--db", db)
    result = stet("store", "migrate", "--json", "--db", db)
    moved = json.loads(result.output)
    assert moved["blobs"] == 6 and moved["objects"] == 2
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM blob_chunks").fetchone()[0] == 0
    conn.close()
    assert os.path.getsize(db) < before - (30 << 20)
    assert marker not in db.read_bytes()
    assert stet("verify", "--db", db).output.startswith("ok:")
    with Archive(db) as archive:
        doc = next(d for d in archive.documents() if d["filename"] == "b3.bin")
        assert b"".join(archive.raw(doc["id"])) == marker + bytes([0xfb]) * 5000
    # nothing left to move: a second run moves nothing
    assert json.loads(stet("store", "migrate", "--json", "--db", db).output)["blobs"] == 0


def test_chunks_leave_the_file_only_for_a_recorded_object(tmp_path):
    db = tmp_path / "archive.db"
    (tmp_path / "a.bin").write_bytes(b"\x00\x01" * 100)
    stet("ingest", "-s", tmp_path / "a.bin", "--db", db)
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="blob_chunks is append-only"):
        conn.execute("DELETE FROM blob_chunks")


def test_bad_store_settings_write_nothing(tmp_path, s3):
    db = tmp_path / "archive.db"
    (tmp_path / "a.txt").write_text("x\n")
    stet("ingest", "-s", tmp_path / "a.txt", "--db", db)
    head = stet("log", "--head", "--db", db).output
    for url, message in (("http://example.org/x", "is not an object store location"),
                         ("s3://A_B/x", "is not a bucket name"),
                         ("s3://bucket/../x", "may not hold")):
        result = stet("store", "set", url, "--db", db, check=False)
        assert result.exit_code == 1 and message in result.output
    result = stet("store", "migrate", "--db", db, check=False)
    assert result.exit_code == 1 and "no object store is set" in result.output
    # a store that belongs to another archive
    other = tmp_path / "other.db"
    stet("ingest", "-s", tmp_path / "a.txt", "--db", other)
    stet("store", "set", s3.url, "--db", other)
    result = stet("store", "set", s3.url, "--db", db, check=False)
    assert result.exit_code == 1 and "holds another archive's objects" in result.output
    assert stet("log", "--head", "--db", db).output == head


def test_a_large_file_goes_up_in_flat_memory(tmp_path, s3):
    """A 200 MB file into a store-backed archive: streamed in parts, never whole in memory."""
    db = tmp_path / "archive.db"
    stet("store", "set", s3.url, "--db", db)
    big = tmp_path / "video.bin"
    with open(big, "wb") as out:
        block = os.urandom(1 << 20)
        for i in range(200):
            out.write(block[:-4] + i.to_bytes(4, "big"))
    script = ("import sys\nfrom stet.cli import cli\n"
              "try:\n    cli(['ingest', '-s', sys.argv[1], '--db', sys.argv[2]])\n"
              "except SystemExit:\n    pass\n"
              # VmHWM: this process's own peak (ru_maxrss would count the forking parent's)
              "print(next(int(line.split()[1]) // 1024 for line in open('/proc/self/status')\n"
              "           if line.startswith('VmHWM:')))\n")
    process = subprocess.run([sys.executable, "-c", script, str(big), str(db)], cwd=tmp_path,
                             capture_output=True, text=True, check=True)
    peak = int(process.stdout.strip().splitlines()[-1])
    assert peak < 160, f"peak RSS {peak} MiB for a 200 MiB file"
    assert os.path.getsize(db) < (5 << 20)
    assert stet("verify", "--db", db).output.startswith("ok:")


def test_where_bytes_are_is_history_too(stored):
    """blob_objects is append-only; a blob's chunks may leave the file only once it has one."""
    conn = sqlite3.connect(stored)
    with pytest.raises(sqlite3.IntegrityError, match="blob_objects is append-only: UPDATE refused"):
        conn.execute("UPDATE blob_objects SET key = 'elsewhere'")
    with pytest.raises(sqlite3.IntegrityError, match="blob_objects is append-only: DELETE refused"):
        conn.execute("DELETE FROM blob_objects")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT OR REPLACE INTO blob_objects SELECT * FROM blob_objects")


def test_an_unreachable_store_fails_the_ingest_and_writes_nothing(stored, s3, monkeypatch, tmp_path):
    import socket

    from stet.blobs import s3 as s3_module
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(s3_module, "_clients", {})
    (tmp_path / "late.bin").write_bytes(b"\xff" * 100)
    head = stet("log", "--head", "--db", stored).output
    result = stet("ingest", "-s", tmp_path / "late.bin", "--db", stored, check=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: object store s3://") and result.output.count("\n") == 1
    assert stet("log", "--head", "--db", stored).output == head


def test_restored_on_a_fresh_machine_every_byte_read_from_the_store(stored, s3, tmp_path):
    """Replicated (Litestream), restored into a new folder: verify passes there with every raw
    byte read from the store, and names a document whose object goes missing."""
    stet("replicate", "--once", "--db", stored)  # to the store set: s3.url/catalog
    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    restored = fresh / "archive.db"
    stet("restore", s3.url, "--db", restored)
    assert stet("log", "--head", "--db", restored).output == stet("log", "--head", "--db", stored).output
    assert stet("verify", "--db", restored).output.startswith("ok:")
    with Archive(restored) as archive:
        doc = next(d for d in archive.documents() if d["filename"] == "binary.bin")
        assert b"".join(archive.raw(doc["id"])) == bytes(range(256)) * 40
    key = sqlite3.connect(restored).execute("SELECT key FROM blob_objects LIMIT 1").fetchone()[0]
    s3.client().delete_object(Bucket=s3.name, Key=key)
    result = stet("verify", "--db", restored, check=False)
    assert result.exit_code == 1 and "missing from the store" in result.output


def test_publishing_reads_each_object_once(tmp_path, s3, monkeypatch):
    """A snapshot of a store-backed archive holds its bytes inline, read a pack at a time
    (not a request per file), and a text's bytes once, as the text."""
    from stet.blobs import s3 as s3_module
    from stet.publish import publish
    db = tmp_path / "archive.db"
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(30):
        (folder / f"f{i:02}.bin").write_bytes(bytes([0xf8, i]) * 3000)
    (folder / "plain.txt").write_text("a plain text\n")
    stet("store", "set", s3.url, "--db", db)
    stet("ingest", "-s", folder, "--db", db)
    reads = []
    original = s3_module.ObjectStore.read_range

    def counted(self, key, offset, length):
        reads.append(key)
        return original(self, key, offset, length)

    monkeypatch.setattr(s3_module.ObjectStore, "read_range", counted)
    out = tmp_path / "site.db"
    publish(db, out)
    assert len(reads) == 1  # one pack, one read
    with Archive(out, readonly=True) as snapshot:
        assert snapshot.verify() == []
        storage = dict(snapshot.conn.execute(
            "SELECT d.filename, b.storage FROM documents d JOIN blobs b ON b.sha256 = d.sha256"))
        assert storage["plain.txt"] == "text" and storage["f07.bin"] == "chunks"
        doc = next(d for d in snapshot.documents() if d["filename"] == "f07.bin")
        assert b"".join(snapshot.raw(doc["id"])) == bytes([0xf8, 7]) * 3000
