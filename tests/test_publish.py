"""stet publish: a public snapshot with nothing restricted in it, its own verifiable chain."""

from __future__ import annotations

import json
import sqlite3

import pytest

from stet import Archive
from stet.provenance import iter_events
from stet.publish import fold, publish

SECRET = "Quillon Abernathy-Voss named the officers in private"
SECRET_BODY = "source protection: Voss family"


@pytest.fixture
def source(tmp_path, run):
    public = tmp_path / "public.txt"
    public.write_text("Freedom of expression is a human right.\n", encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    db = tmp_path / "archive.db"
    with Archive(db) as archive:
        pub = archive.ingest([public], by="ana", source="field office")[0]
        sec = archive.ingest([secret], by="ana", restricted=True)[0]
        archive.ingest([public], by="reza", source="second copy")  # a duplicate event
        archive.add_layer("claims", by="ana")
        archive.add_layer("protected-sources", by="ana")
        archive.annotate(pub["id"], layer="claims", body="a claim", by="ana", quote="human right")
        archive.annotate(sec["id"], layer="protected-sources", body=SECRET_BODY, by="ana",
                         quote="Quillon Abernathy-Voss")
        archive.annotate(sec["id"], layer="claims", body="restricted claim", by="ana",
                         quote="officers")
        head = list(archive.log())[-1]
    return {"db": db, "public": pub, "secret": sec, "head": head, "tmp": tmp_path}


def test_publish_leaves_out_restricted_material(source, run):
    out = source["tmp"] / "site" / "archive.db"
    out.parent.mkdir()
    result = run("publish", out, db=str(source["db"]))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"published 1 documents, 1 annotations, 5 events to {out}"
    assert result.output.splitlines()[1] == "left out 1 restricted documents, 2 annotations, 4 events"
    data = out.read_bytes()
    for secret in (SECRET, "Abernathy", SECRET_BODY, "protected-sources", source["secret"]["sha256"]):
        assert secret.encode("utf-8") not in data, secret
    assert not out.with_name("archive.db-journal").exists()
    assert [p.name for p in out.parent.iterdir()] == ["archive.db"]
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("select id from documents").fetchall() == [(source["public"]["id"],)]
    assert conn.execute("select name from layers").fetchall() == [("claims",)]
    assert conn.execute("select body from annotations").fetchall() == [("a claim",)]
    assert conn.execute("select count(*) from documents_fts where documents_fts match 'Quillon'").fetchone()[0] == 0
    assert conn.execute("select rowid from documents_fts where documents_fts match 'expression'").fetchall() == [(1,)]


def test_snapshot_chain_verifies_and_points_at_its_source(source, run):
    out = source["tmp"] / "out.db"
    assert run("publish", out, "--json", db=str(source["db"])).exit_code == 0
    import hashlib

    published_sha = hashlib.sha256(out.read_bytes()).hexdigest()  # before verify opens it (WAL)
    result = run("verify", db=str(out))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 1 documents, 5 events, 1 annotation revisions")
    with Archive(source["db"]) as archive:
        source_events = {e["seq"]: e for e in archive.log()}
    head = source["head"]
    snap = sqlite3.connect(out)
    events = list(iter_events(snap))
    first = events[0]
    details = json.loads(first["details"])
    assert first["seq"] == 1 and first["action"] == "publish"
    assert details["source"] == {"events": head["seq"], "head": head["hash"]}
    assert details["left_out"] == {"documents": 1, "texts": 1, "blobs": 1, "annotations": 2,
                                   "annotation_revisions": 2, "layers": 1, "events": 4}
    for event in events[1:]:
        original = json.loads(event["details"])["original"]
        theirs = source_events[original["seq"]]
        assert theirs["hash"] == original["hash"]
        assert (theirs["action"], theirs["time"], theirs["document"]) == \
            (event["action"], event["time"], event["document"])
    assert [e["action"] for e in events] == ["publish", "ingest", "ingest-duplicate",
                                             "layer-add", "annotate"]
    # the source archive records the publication, with the snapshot's hash
    last = source_events[max(source_events)]
    assert last["action"] == "publish"
    assert last["details"]["sha256"] == published_sha
    assert last["details"]["source"] == {"events": head["seq"], "head": head["hash"]}


def test_publish_errors_write_nothing(source, run, tmp_path):
    db = str(source["db"])
    out = tmp_path / "out.db"
    out.write_bytes(b"keep me")
    result = run("publish", out, db=db)
    assert result.exit_code == 1
    assert result.output == f"Error: {out} already exists (give --force to replace it)\n"
    assert out.read_bytes() == b"keep me"
    result = run("publish", db, "--force", db=db)
    assert result.output == f"Error: {db} is the archive itself: publish writes a new file\n"
    result = run("publish", tmp_path / "nowhere" / "out.db", db=db)
    assert result.output == f"Error: no folder {tmp_path / 'nowhere'}\n"
    result = run("publish", tmp_path / "x.db", db=str(tmp_path / "missing.db"))
    assert result.exit_code == 1 and "no archive at" in result.output
    with Archive(db) as archive:
        assert [e["action"] for e in archive.log()].count("publish") == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
    assert run("publish", out, "--force", db=db).exit_code == 0
    assert out.read_bytes()[:15] == b"SQLite format 3"


def test_fold_removes_vowel_marks_only():
    assert fold("اعتُمد") == "اعتمد"
    assert fold("کلیهٔ") == "کلیه"
    assert fold("می\u200cشود") == "می\u200cشود"  # ZWNJ stays: the tokenizer separates on it
    assert fold("café") == "café"  # precomposed letters are the tokenizer's business


def test_publish_library_returns_a_summary(source):
    summary = publish(source["db"], source["tmp"] / "lib.db")
    assert summary["published"]["documents"] == 1
    assert summary["head"]["events"] == 5
    with Archive(source["db"]) as archive:
        assert list(archive.log())[-1]["action"] != "publish"


def test_snapshot_has_the_archives_page_size(source):
    """One place opens SQLite (stet.store.connect): a snapshot gets 16 KiB pages too."""
    publish(source["db"], source["tmp"] / "pages.db")
    for path in (source["db"], source["tmp"] / "pages.db"):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
        conn.close()


def test_serve_cache_in_a_read_only_folder(tmp_path):
    import os

    from stet.errors import StetError
    from stet.snapshots import ensure_snapshot

    if os.geteuid() == 0:  # root writes anywhere: a folder that does not exist instead
        cache = tmp_path / "no-such-folder" / "archive.db-public"
        expected = f"no folder {cache.parent}"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        cache = folder / "archive.db-public"
        expected = f"cannot write {cache}: unable to open database file"
    doc = tmp_path / "a.txt"
    doc.write_text("hello\n", encoding="utf-8")
    with Archive(tmp_path / "archive.db") as archive:
        archive.ingest([doc], by="ana")
    with pytest.raises(StetError) as info:
        ensure_snapshot(tmp_path / "archive.db", cache)
    assert str(info.value) == expected


def test_publish_failure_is_one_line(source, run, monkeypatch):
    import stet.publish

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(stet.publish, "_build", full)
    out = source["tmp"] / "full.db"
    result = run("publish", out, db=str(source["db"]))
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {out}: database or disk is full\n"
    assert not out.exists()
