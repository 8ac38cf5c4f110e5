"""The workbench's private search index (stet.workbench.search): restricted material found and
marked, kept up to date incrementally, rebuilt when it is not this archive's or not readable,
and never a byte written to the archive."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import stat
import sqlite3
from email.message import EmailMessage

import pytest

from stet import Archive
from stet.datasette_plugin import highlight
from stet.datasette_plugin.views import COUNT_CAP
from stet.errors import InvalidInput
from stet.workbench.search import StaffSearch, default_index_path

WITNESS = "Quillon Abernathy-Voss named the officers in private."
PUBLIC = "Freedom of expression is a human right."


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def mail(folder, body, attachment):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "Report"
    message.set_content(body)
    message.add_attachment(attachment.encode(), maintype="text", subtype="plain",
                           filename="findings.txt")
    path = folder / "mail.eml"
    path.write_bytes(bytes(message))
    return path


def ids(result, kind="documents"):
    return [row["id"] for row in result[kind]]


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


@pytest.fixture
def search(db_path, archive):
    """The index of the (open, so WAL-live) test archive, at its default place."""
    staff = StaffSearch(db_path)
    yield staff
    staff.close()


def test_finds_restricted_documents_and_marks_them(archive, files, search):
    public = archive.ingest([write(files, "public.txt", PUBLIC)])[0]["id"]
    secret = archive.ingest([write(files, "witness.txt", WITNESS)], restricted=True)[0]["id"]
    found = search.search("Abernathy")
    assert found["document_count"] == 1 and found["annotation_count"] == 0
    [row] = found["documents"]
    assert row == {"id": secret, "title": "witness.txt", "media_type": "text/plain",
                   "context": highlight.snippet(WITNESS, "Abernathy"), "restricted": True}
    assert search.search("human right")["documents"][0] == {
        "id": public, "title": "public.txt", "media_type": "text/plain",
        "context": highlight.snippet(PUBLIC, "human right"), "restricted": False}
    # the title is searched too, as in a snapshot
    assert ids(search.search("witness")) == [secret]


def test_an_attachment_of_a_restricted_message_is_restricted(archive, files, search):
    archive.ingest([mail(files, "See the attached report.", "Attached findings about Karimi.\n")])
    docs = {d["id"]: d for d in archive.documents()}
    child = next(d["id"] for d in docs.values() if d["parent"] is not None)
    parent = docs[child]["parent"]
    assert [(r["id"], r["restricted"]) for r in search.search("Karimi")["documents"]] == [(child, False)]
    # only the message is restricted: its attachment's own state stays public
    archive.restrict(parent, reason="names a witness")
    assert [(r["id"], r["restricted"]) for r in search.search("Karimi")["documents"]] == [(child, True)]
    assert [(r["id"], r["restricted"]) for r in search.search("report")["documents"]] == [(parent, True)]
    archive.add_layer("people")
    ann = archive.annotate(child, layer="people", quote="Karimi", body="a witness", tags=["Erbil"])
    [row] = search.search("Erbil")["annotations"]
    assert row == {"id": ann["id"], "document": child, "exact": "Karimi", "body": "a witness",
                   "author": ann["author"], "modified": ann["modified"], "layer": "people",
                   "title": "findings.txt", "restricted": True}


def test_incremental_documents_titles_annotations_and_restriction(archive, files, search):
    first = archive.ingest([write(files, "first.txt", "The river crossing at dawn.")])[0]["id"]
    counts = search.refresh()
    assert counts["rebuilt"] is True and counts["documents_added"] == 1
    assert search.refresh() == {"rebuilt": False, "documents_added": 0, "titles_changed": 0,
                                "annotations_added": 0, "annotations_changed": 0,
                                "annotations_removed": 0}

    second = archive.ingest([write(files, "second.txt", "A checkpoint near Zakho.")])[0]["id"]
    assert ids(search.search("Zakho")) == [second]
    assert search.refresh()["documents_added"] == 0  # search refreshed already

    archive.edit(first, title="Crossing report, Semalka", reason="a better title")
    assert search.refresh()["titles_changed"] == 1
    assert ids(search.search("first")) == []
    [row] = search.search("Semalka")["documents"]
    assert (row["id"], row["title"]) == (first, "Crossing report, Semalka")
    assert ids(search.search("river")) == [first]  # the text is still indexed after the edit
    assert ids(search.search("crossing")) == [first]
    archive.edit(first, title="Crossing report, Faysh Khabur", reason="the right place")
    assert ids(search.search("Semalka")) == [] and ids(search.search("Khabur")) == [first]

    archive.add_layer("places")
    ann = archive.annotate(second, layer="places", quote="Zakho", body="border town")
    assert ids(search.search("border"), "annotations") == [ann["id"]]
    archive.revise(ann["id"], body="a town on the Khabur")
    counts = search.refresh()
    assert (counts["annotations_changed"], counts["annotations_added"]) == (1, 0)
    assert ids(search.search("border"), "annotations") == []
    found = search.search("Khabur")
    assert ids(found, "annotations") == [ann["id"]] and ids(found) == [first]
    assert found["annotations"][0]["body"] == "a town on the Khabur"

    archive.retract(ann["id"], reason="wrong")
    assert search.refresh()["annotations_removed"] == 1
    found = search.search("Khabur")
    assert found["annotations"] == [] and found["annotation_count"] == 0

    # restricted after it was indexed: still found, now marked
    assert search.search("Zakho")["documents"][0]["restricted"] is False
    archive.restrict(second, reason="names a source")
    assert search.refresh()["titles_changed"] == 0  # a restriction changes nothing indexed
    [row] = search.search("Zakho")["documents"]
    assert (row["id"], row["restricted"]) == (second, True)
    archive.unrestrict(second, reason="cleared")
    assert search.search("Zakho")["documents"][0]["restricted"] is False
    # every delete and re-insert left both indexes structurally sound
    conn = sqlite3.connect(search.index_path)
    for table in ("documents_fts", "annotations_fts"):
        conn.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
    conn.close()


def test_folded_text_and_persian_with_zwnj(archive, files, search):
    broken = archive.ingest([write(files, "pdf.txt", "Evidence of manip\ufffeulation and co\u00adoperation.")])
    persian = archive.ingest([write(files, "fa.txt", "این یک حمله وحشیانه‌ای بود.")])
    assert ids(search.search("manipulation")) == [broken[0]["id"]]
    assert ids(search.search("cooperation")) == [broken[0]["id"]]
    assert "manip\ufffeulation" in search.search("manipulation")["documents"][0]["context"]
    assert ids(search.search("وحشیانه‌ای")) == [persian[0]["id"]]  # with the ZWNJ: a phrase
    assert ids(search.search("وحشیانه")) == [persian[0]["id"]]
    assert search.search("وحشیانهای")["document_count"] == 0  # as the public search


def test_counts_are_capped_and_pages_follow_ids(archive, files, search, monkeypatch):
    import stet.workbench.search as module

    assert module.COUNT_CAP is COUNT_CAP  # the public page's cap
    monkeypatch.setattr(module, "COUNT_CAP", 3)
    made = [r["id"] for r in archive.ingest(
        [write(files, f"{n}.txt", f"Statement number {n} about the dam.") for n in range(6)])]
    found = search.search("dam", limit=2)
    assert found["document_count"] == 4 and ids(found) == made[:2]
    assert ids(search.search("dam", limit=2, offset=4)) == made[4:]
    assert search.search('"" ') == {"documents": [], "annotations": [], "document_count": 0,
                                    "annotation_count": 0}


def test_the_index_of_another_archive_is_rebuilt(tmp_path, files):
    index = tmp_path / "shared-index.db"
    with Archive(tmp_path / "one.db") as one:
        one.ingest([write(files, "a.txt", "Only in the first archive: Halabja.")])
    with Archive(tmp_path / "two.db") as two:
        two.ingest([write(files, "b.txt", "Only in the second archive: Sinjar.")])
    with StaffSearch(tmp_path / "one.db", index) as staff:
        assert ids(staff.search("Halabja")) == [1]
    with StaffSearch(tmp_path / "two.db", index) as staff:
        assert staff.refresh()["rebuilt"] is True
        assert staff.search("Halabja")["document_count"] == 0
        assert ids(staff.search("Sinjar")) == [1]
        assert staff.refresh()["rebuilt"] is False


def test_a_corrupt_index_is_rebuilt(db_path, archive, files):
    archive.ingest([write(files, "a.txt", "The Mosul dam report.")])
    index = default_index_path(db_path)
    index.parent.mkdir()
    index.write_bytes(b"not an index, not a database\n" * 200)
    with StaffSearch(db_path) as staff:
        assert staff.refresh()["rebuilt"] is True
        assert ids(staff.search("Mosul")) == [1]
    # damaged inside a valid file: the state is sound, the full-text index's data page is not
    conn = sqlite3.connect(index)
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'documents_fts_data'").fetchone()
    conn.close()
    with open(index, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xff" * size)
    with StaffSearch(db_path) as staff:
        assert ids(staff.search("Mosul")) == [1]
        assert staff.refresh()["rebuilt"] is False


def test_a_deleted_index_is_rebuilt_while_in_use(archive, files, search):
    archive.ingest([write(files, "a.txt", "Kirkuk, 1991.")])
    assert ids(search.search("Kirkuk")) == [1]
    os.unlink(search.index_path)
    assert search.refresh()["rebuilt"] is True
    assert os.path.exists(search.index_path) and ids(search.search("Kirkuk")) == [1]


def test_the_archive_is_never_written(tmp_path, files):
    db = tmp_path / "archive.db"
    with Archive(db) as archive:
        doc = archive.ingest([write(files, "a.txt", "Anfal, 1988.")])[0]["id"]
        archive.annotate(doc, layer="notes", quote="Anfal", body="campaign")
    assert not os.path.exists(f"{db}-wal") and not os.path.exists(f"{db}-shm")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    mtime = os.stat(db).st_mtime_ns
    with StaffSearch(db) as staff:
        staff.refresh()
        found = staff.search("Anfal")
        assert ids(found) == [doc] and found["annotation_count"] == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert os.stat(db).st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.db", "archive.db-workbench", "in"]


def test_the_index_is_private(db_path, archive, files, search):
    archive.ingest([write(files, "a.txt", "Private words.")], restricted=True)
    search.refresh()
    index = default_index_path(db_path)
    assert search.index_path == str(index) and index.name == "search.db"
    assert index.parent.name == "archive.db-workbench"
    assert stat.S_IMODE(os.stat(index).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(index.parent).st_mode) == 0o700


def test_an_existing_index_file_is_made_private(db_path, archive, tmp_path):
    index = tmp_path / "elsewhere" / "search.db"
    index.parent.mkdir()
    index.write_bytes(b"")
    os.chmod(index, 0o644)
    with StaffSearch(db_path, index) as staff:
        staff.refresh()
    assert stat.S_IMODE(os.stat(index).st_mode) == 0o600


def test_threads_share_one_index(archive, files, search):
    made = [r["id"] for r in archive.ingest(
        [write(files, f"{n}.txt", f"Report {n} on the Tigris.") for n in range(5)])]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: search.search("Tigris"), range(16)))
    assert all(ids(r) == made for r in results)


def test_refused_page_arguments(search):
    with pytest.raises(InvalidInput, match="limit -1"):
        search.search("x", limit=-1)
    with pytest.raises(InvalidInput, match="offset 'a'"):
        search.search("x", offset="a")
