"""stet ingest, documents, show, text, log: the archive core through the CLI."""

import hashlib
import json
import os

import pytest

import stet.ingest
import stet.ingest.prepared


def lines(output):
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_ingest_then_duplicate(run, tmp_path, archive):
    doc = tmp_path / "note.txt"
    doc.write_text("Let it stand.\n", encoding="utf-8")
    first = run("ingest", doc, "--json", "--source", "https://example.org/a", "--by", "ana")
    assert first.exit_code == 0, first.output
    (rec,) = lines(first.stdout)
    assert rec == {
        "path": str(doc), "id": 1, "sha256": hashlib.sha256(b"Let it stand.\n").hexdigest(),
        "size": 14, "media_type": "text/plain", "status": "new",
    }

    second = run("ingest", doc, "--json", "--by", "bo", "--source", "a mirror")
    (again,) = lines(second.stdout)
    assert again["status"] == "duplicate" and again["id"] == 1 and "error" not in again
    assert [d["id"] for d in archive.documents()] == [1]
    events = list(archive.log())
    assert [e["action"] for e in events] == ["ingest", "ingest-duplicate"]
    assert events[1]["actor"] == "bo"
    assert events[1]["details"]["source"] == "a mirror"
    assert events[1]["details"]["path"] == str(doc)
    assert archive.conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1


def test_folder_recursive_stable_order(run, tmp_path):
    for name in ["b/z.txt", "b/a.txt", "a.txt", "c/d/e.txt"]:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    result = run("ingest", tmp_path / "in", "--json")
    assert result.exit_code == 0
    paths = [os.path.relpath(r["path"], tmp_path / "in") for r in lines(result.stdout)]
    assert paths == ["a.txt", "b/a.txt", "b/z.txt", "c/d/e.txt"]
    assert [r["id"] for r in lines(result.stdout)] == [1, 2, 3, 4]


def test_human_output_and_documents(run, tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    out = run("ingest", tmp_path / "a.txt", "--title", "Alpha")
    assert out.exit_code == 0
    assert out.stdout.startswith("new            1  ")
    listing = run("documents")
    assert "Alpha" in listing.stdout and "text/plain" in listing.stdout
    docs = json.loads(run("documents", "--json").stdout)
    assert docs[0]["title"] == "Alpha" and docs[0]["restricted"] is False
    assert docs[0]["ingested_by"] == "tester" and docs[0]["ingested_at"].endswith("Z")


def test_missing_path_is_an_error_but_good_files_go_in(run, tmp_path, archive):
    (tmp_path / "good.txt").write_text("good")
    result = run("ingest", tmp_path / "nope.txt", tmp_path / "good.txt", "--json")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'nope.txt'}: no such file or directory\n"
    recs = lines(result.stdout)
    assert recs[0] == {"path": str(tmp_path / "nope.txt"), "id": None, "sha256": None,
                       "size": None, "media_type": None, "status": "error",
                       "error": f"{tmp_path / 'nope.txt'}: no such file or directory"}
    assert recs[1]["status"] == "new"
    assert len(list(archive.documents())) == 1


def test_unreadable_file(run, tmp_path, monkeypatch, archive):
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "ok.txt").write_text("y")
    real_open = stet.ingest.prepared.open_regular

    def guarded(path, *args, **kwargs):
        if str(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(stet.ingest.prepared, "open_regular", guarded)
    (tmp_path / "archive.db-public").write_bytes(b"a snapshot stet serve keeps")
    result = run("ingest", tmp_path)  # the archive's own files beside them are passed over
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'secret.txt'}: permission denied\n"
    assert [d["filename"] for d in archive.documents()] == ["ok.txt"]
    assert archive.verify() == []


def test_the_archives_own_folders_are_never_ingested(run, tmp_path, archive):
    """Beside the archive: the public snapshots, the workbench's private search index
    (restricted texts) and Litestream's state (the archive's own pages): none of it is a
    document, whether the folder around them or the file itself is given."""
    own = {"archive.db-public/1-abc.db": b"a snapshot", "archive.db-workbench/search.db": b"private",
           ".archive.db-litestream/ltx/0/0000.ltx": b"pages"}
    for relative, data in own.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    (tmp_path / "ok.txt").write_text("y")
    assert run("ingest", tmp_path).exit_code == 0
    for relative in own:
        assert run("ingest", tmp_path / relative).exit_code == 0
    assert [d["filename"] for d in archive.documents()] == ["ok.txt"]


def test_symlink_loop_and_escape(run, tmp_path, archive):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "sub" / "loop").symlink_to(root)
    (root / "self").symlink_to(root / "self")
    (root / "out").symlink_to(tmp_path)
    (root / "inside.txt").symlink_to(root / "sub" / "a.txt")
    result = run("ingest", root, "--json")
    assert result.exit_code == 1
    errors = {os.path.basename(r["path"]): r["error"] for r in lines(result.stdout) if r["status"] == "error"}
    assert errors == {
        "loop": f"{root / 'sub' / 'loop'}: symbolic link loop; not followed",
        "self": f"{root / 'self'}: too many levels of symbolic links",
        "out": f"{root / 'out'}: symbolic link leads out of {root}; not followed",
    }
    statuses = [r["status"] for r in lines(result.stdout) if r["status"] != "error"]
    assert statuses == ["new", "duplicate"]  # inside.txt (a link inside the tree), then sub/a.txt
    assert len(result.stderr.strip().splitlines()) == 3
    assert len(list(archive.documents())) == 1


def test_binary_file_kept_with_empty_text_and_warning(run, tmp_path, archive):
    data = bytes(range(256)) * 10
    (tmp_path / "image.bin").write_bytes(data)
    result = run("ingest", tmp_path / "image.bin", "--json")
    assert result.exit_code == 0
    assert result.stderr.startswith("Warning: ") and "no text extractor for application/octet-stream" in result.stderr
    (rec,) = lines(result.stdout)
    assert rec["media_type"] == "application/octet-stream"
    assert b"".join(archive.raw(1)) == data
    text = run("text", "1")
    assert text.exit_code == 0 and text.stdout_bytes == b""
    assert archive.document(1)["warning"] == "no text extractor for application/octet-stream"


@pytest.mark.parametrize(
    "raw, expected, encoding",
    [
        ("سلام\u200cدنیا".encode("utf-8"), "سلام\u200cدنیا", "utf-8"),
        (b"\xef\xbb\xbfhello", "hello", "utf-8-sig"),
        ("héllo wörld".encode("utf-16"), "héllo wörld", "utf-16"),
        ("héllo wörld".encode("utf-16-be").join([b"\xfe\xff", b""]), "héllo wörld", "utf-16"),
        ("Ωμέγα 😀".encode("utf-32"), "Ωμέγα 😀", "utf-32"),
        (b"line one\r\nline two\rthree\n", "line one\nline two\nthree\n", "utf-8"),
        ("e\u0301 \u00ad soft\u200dhyphen \u200e\u200f".encode(), "e\u0301 \u00ad soft\u200dhyphen \u200e\u200f", "utf-8"),
    ],
)
def test_text_encodings_keep_every_code_point(run, tmp_path, archive, raw, expected, encoding):
    (tmp_path / "t.txt").write_bytes(raw)
    assert run("ingest", tmp_path / "t.txt").exit_code == 0
    assert run("text", "1").stdout_bytes.decode("utf-8") == expected
    assert archive.document(1)["encoding"] == encoding
    assert archive.verify() == []


def test_legacy_encoding_detected_and_recorded(run, tmp_path, archive):
    text = ("Le présent rapport décrit les réunions tenues à Genève en août, "
            "où les témoins ont été entendus. ") * 4
    (tmp_path / "fr.txt").write_bytes(text.encode("cp1252"))
    assert run("ingest", tmp_path / "fr.txt").exit_code == 0
    assert archive.text(1) == text
    assert archive.document(1)["encoding"] in {"cp1252", "latin_1", "iso8859_15", "cp1250"}


def test_html_visible_text_and_title(run, tmp_path, archive):
    html = (
        "<!DOCTYPE html><html><head><title> Report &amp; notes </title>"
        "<style>p { color: red }</style><script>var secret = 1;</script></head>"
        "<body><h1>Heading</h1><p>First   para\n with <b>bold</b> &lt;tag&gt;</p>"
        "<p dir='rtl'>می\u200cخواهم &#x200F;</p><div>a<br>b</div><!-- hidden -->"
        "<pre>  keep\n   spacing</pre><noscript>no</noscript><p>e\u0301</p></body></html>"
    )
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    result = run("ingest", tmp_path / "page.html", "--json")
    (rec,) = lines(result.stdout)
    assert rec["media_type"] == "text/html"
    doc = archive.document(1)
    assert doc["title"] == "Report & notes"
    assert doc["extractor"] == "stet.html"
    assert archive.text(1) == (
        "Heading\nFirst para with bold <tag>\nمی\u200cخواهم \u200f\na\nb\n  keep\n   spacing\ne\u0301"
    )


def test_html_detected_by_content_not_name(run, tmp_path):
    (tmp_path / "page.dat").write_text("<!doctype html><title>x</title><p>y</p>")
    (rec,) = lines(run("ingest", tmp_path / "page.dat", "--json").stdout)
    assert rec["media_type"] == "text/html"


def test_title_takes_a_single_file(run, tmp_path, archive):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    result = run("ingest", tmp_path, "--title", "T")
    assert result.exit_code == 1
    assert result.stderr == "Error: --title takes a single file\n"
    assert list(archive.documents()) == []


def test_restricted_and_source_recorded(run, tmp_path, archive):
    (tmp_path / "a.txt").write_text("a")
    run("ingest", tmp_path / "a.txt", "--restricted", "--source", "field office")
    doc = archive.document(1)
    assert doc["restricted"] is True and doc["source"] == "field office"
    assert list(archive.log())[0]["details"]["restricted"] is True


def test_document_references(run, tmp_path, archive):
    (tmp_path / "a.txt").write_text("a")
    run("ingest", tmp_path / "a.txt")
    sha = archive.document(1)["sha256"]
    assert run("show", sha[:8], "--json").exit_code == 0
    assert json.loads(run("show", f"sha256:{sha[:10]}", "--json").stdout)["id"] == 1
    assert run("show", "1").stdout.startswith("id:                1\n")
    missing = run("show", "7")
    assert missing.exit_code == 1 and missing.stderr == "Error: no document 7\n"
    short = run("show", "abcdef")
    assert short.stderr == "Error: 'abcdef': a SHA-256 prefix needs at least 8 hex digits\n"
    both = run("show", "12345678")
    assert both.exit_code == 1
    assert both.stderr == ("Error: '12345678' could be a document id or a SHA-256 prefix: "
                           "write 12345678 for the id or sha256:12345678 for the hash\n")


def test_read_commands_need_an_archive(run, tmp_path):
    result = run("documents", db=str(tmp_path / "none.db"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no archive at ")
    assert not (tmp_path / "none.db").exists()


def test_usage_error_exit_code(run):
    assert run("ingest").exit_code == 2


def test_log_json_is_a_chain(run, tmp_path):
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text(name)
    run("ingest", tmp_path)
    events = json.loads(run("log", "--json").stdout)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert events[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:]))
    assert all(e["time"].endswith("Z") and e["subject"] == f"document:{e['document']}" for e in events)
    assert run("log", "2", "--json").exit_code == 0
    human = run("log").stdout.splitlines()
    assert human[0].split() == ["seq", "time", "actor", "action", "subject", "hash"]
    assert len(human) == 2 + 3 and "ingest" in human[2]


def test_large_file_is_streamed_in_chunks(tmp_path, archive):
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as out:
        for _ in range(stet.ingest.SMALL_FILE // len(block) + 3):
            out.write(block)
    (result,) = archive.ingest([big], by="t")
    assert result["status"] == "new"
    chunks = archive.conn.execute("SELECT count(*) FROM blob_chunks").fetchone()[0]
    assert chunks == big.stat().st_size // (1 << 20)
    assert b"".join(archive.raw(1)) == big.read_bytes()
    assert archive.verify() == []
    (again,) = archive.ingest([big], by="t")
    assert again["status"] == "duplicate"


def test_file_name_that_is_not_utf8(run, tmp_path, archive):
    """A name from another system (Latin-1 bytes): the file goes in, its name is shown with
    \\xNN escapes, and the path in --json and in the event is text."""
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9 \xff.txt")
    (folder / name).write_bytes(b"cafe")
    (folder / "plain.txt").write_bytes(b"plain")
    result = run("ingest", folder, "--json")
    assert result.exit_code == 0, result.stderr
    recs = lines(result.stdout)
    assert [r["path"] for r in recs] == [f"{folder}/caf\\xe9 \\xff.txt", f"{folder}/plain.txt"]
    assert archive.document(recs[0]["id"])["filename"] == "caf\\xe9 \\xff.txt"
    assert list(archive.log())[0]["details"]["path"] == f"{folder}/caf\\xe9 \\xff.txt"
    assert archive.verify() == []


def test_busy_archive_is_a_one_line_error(run, tmp_path, db_path, monkeypatch):
    """A write that cannot get the lock in time fails cleanly and writes nothing."""
    import sqlite3
    import stet.store
    (tmp_path / "a.txt").write_text("a")
    assert run("ingest", tmp_path / "a.txt").exit_code == 0
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    real_connect = stet.store.connect

    def impatient(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.conn.execute("PRAGMA busy_timeout = 50")
        return db

    monkeypatch.setattr(stet.store, "connect", impatient)
    (tmp_path / "b.txt").write_text("b")
    result = run("ingest", tmp_path / "b.txt")
    holder.execute("ROLLBACK")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {db_path} is busy: another write held it for longer than the "
                             "30-second timeout (a large import?); nothing was written, try again\n")
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM documents").fetchone()[0] == 1


def test_not_a_database_is_a_one_line_error(run, tmp_path):
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not an SQLite file at all, just text" * 20)
    (tmp_path / "a.txt").write_text("a")
    result = run("ingest", tmp_path / "a.txt", db=str(bogus))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {bogus}: file is not a database\n"
