"""Publishing what changed (issue 14, item 1): an earlier snapshot of the archive is brought
up to date with what was added since, and gives the tables a full build gives; when it
cannot (restrict, unrestrict, edit, a layer renamed...), the snapshot is built whole and the
summary says why. Nothing restricted ever reaches a snapshot; the earlier file is only read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import pytest

import stet.publish
from stet import Archive
from stet.errors import StetError
from stet.publish import publish
from stet.snapshots import open_snapshot, snapshot_folder

PUBLIC = "Everyone has the right to freedom of opinion and expression.\n"
SECRET = "Quillon Abernathy-Voss named the officers in private.\n"
SECRET_BODY = "source protection: the Voss family"
LATER_SECRET = "Marisol Okonkwo-Traverse kept the second ledger.\n"

#: Tables a full build and an update write row for row alike (rowids included).
DATA_TABLES = ("blobs", "blob_chunks", "blob_objects", "documents", "texts", "layers", "annotations",
               "annotation_revisions", "annotation_anchoring", "accounts", "tokens")
#: Tables compared otherwise: the snapshot's own events apart, and the full-text indexes by
#: what they index (their pages are laid out as each was written); _sqlite_migrations without
#: the time each migration was applied.
OTHER_TABLES = ("events", "_sqlite_migrations")
FTS = ("documents_fts", "annotations_fts")


def _write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path):
    """An archive with a public and a restricted document, annotations on both, and a layer
    used only on the restricted one; the published snapshot goes to ``out``."""
    files = tmp_path / "files"
    files.mkdir()
    db = tmp_path / "archive.db"
    with Archive(db) as archive:
        pub = archive.ingest([_write(files, "public.txt", PUBLIC)], by="ana",
                             source="press office")[0]
        sec = archive.ingest([_write(files, "secret.txt", SECRET)], by="ana", restricted=True)[0]
        archive.add_layer("claims", by="ana", colour="#c00")
        archive.add_layer("protected-sources", by="ana")
        archive.annotate(pub["id"], layer="claims", body="a claim", by="ana", quote="freedom",
                         tags=["rights"])
        archive.annotate(pub["id"], layer="claims", body="to be checked", by="ana",
                         quote="expression")
        archive.annotate(sec["id"], layer="protected-sources", body=SECRET_BODY, by="ana",
                         quote="Quillon Abernathy-Voss")
    site = tmp_path / "site"
    site.mkdir()
    return {"db": db, "files": files, "public": pub["id"], "secret": sec["id"],
            "out": site / "archive.db", "tmp": tmp_path}


def _publish(site, out=None, *, facade=True, **options):
    """Publish as `stet publish` does: through the facade, which records a publish event in
    the archive (``facade``); else as the library's publish(), which only reads it."""
    if not facade:
        return publish(site["db"], out or site["out"], **options)
    with Archive(site["db"]) as archive:
        return archive.publish(out or site["out"], **options)


def _full(site, name="full.db"):
    """A full build of the archive as it stands (recording nothing in it)."""
    out = site["tmp"] / name
    summary = _publish(site, out, facade=False, full=True)
    assert summary["build"] == "full" and summary["reason"] is None
    return out


def _rows(conn, table):
    return conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()


def _own(row) -> bool:
    """The snapshot's own events: its first (publish) and each update's."""
    return row["document"] is None and row["action"] in ("publish", "publish-update")


def _index(conn, fts):
    """Everything a full-text index holds: each term in each row, column and position."""
    conn.execute(f"CREATE VIRTUAL TABLE temp.v_{fts} USING fts5vocab(main, {fts}, 'instance')")
    try:
        return conn.execute(f"SELECT term, doc, col, offset FROM temp.v_{fts} "
                            "ORDER BY term, doc, col, offset").fetchall()
    finally:
        conn.execute(f"DROP TABLE temp.v_{fts}")


def assert_same_tables(updated, full):
    """What docs/publishing.md promises: the data tables row for row, rowids included; the
    archive's events copied alike (time, actor, action, subject, document, details with the
    original's seq and hash), in the same order; the latest of the snapshot's own events
    records what a full build's first records (source head, left out, rule, format, stet);
    the full-text indexes hold the same entries; the same migrations. What differs: the
    snapshot's own events (an update adds one), and so each copy's seq, prev_hash and hash
    (the chain's, which differ between two full builds as well: event 1 has the time of
    the build)."""
    a, b = sqlite3.connect(updated), sqlite3.connect(full)
    a.row_factory = b.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in a.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {r[0] for r in b.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        shadows = {t for t in tables if t.startswith(FTS)}
        assert tables - shadows == set(DATA_TABLES + OTHER_TABLES)
        for table in DATA_TABLES:
            assert [tuple(r) for r in _rows(a, table)] == [tuple(r) for r in _rows(b, table)], \
                table
        events_a = [dict(r) for r in _rows(a, "events")]
        events_b = [dict(r) for r in _rows(b, "events")]
        copies_a = [{k: e[k] for k in ("time", "actor", "action", "subject", "document",
                                       "details")} for e in events_a if not _own(e)]
        copies_b = [{k: e[k] for k in ("time", "actor", "action", "subject", "document",
                                       "details")} for e in events_b if not _own(e)]
        assert copies_a == copies_b
        own_b = [e for e in events_b if _own(e)]
        assert len(own_b) == 1 and own_b[0]["seq"] == 1
        latest = json.loads([e for e in events_a if _own(e)][-1]["details"])
        latest.pop("since", None)
        assert latest == json.loads(own_b[0]["details"])
        for fts in FTS:
            assert _index(a, fts) == _index(b, fts), fts
        assert a.execute("SELECT id, migration_set, name FROM _sqlite_migrations").fetchall() \
            == b.execute("SELECT id, migration_set, name FROM _sqlite_migrations").fetchall()
    finally:
        a.close()
        b.close()


def assert_verifies(path):
    with Archive(path, readonly=True) as snapshot:
        assert snapshot.verify() == []


def assert_nothing_restricted(path, *secrets):
    data = path.read_bytes()
    for secret in (SECRET.strip(), "Abernathy", SECRET_BODY, "protected-sources", *secrets):
        assert secret.encode("utf-8") not in data, secret


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _email(attachment: str) -> bytes:
    """A message with one text attachment."""
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "office@example.org"
    message["Subject"] = "Statement and annex"
    message.set_content("See the attached annex.\n")
    message.add_attachment(attachment.encode(), maintype="text", subtype="plain",
                           filename="annex.txt")
    return message.as_bytes()


def _import_file(site):
    """W3C JSON Lines from a partner archive holding the same two documents: annotations on
    both (the import's rows on the restricted one are never published)."""
    partner = site["tmp"] / "partner.db"
    with Archive(partner) as other:
        other.ingest([site["files"] / "public.txt", site["files"] / "secret.txt"], by="omar")
        other.annotate(1, layer="fact-check", body="imported note on opinion", by="omar",
                       quote="opinion")
        other.annotate(2, layer="fact-check", body="imported note on officers", by="omar",
                       quote="officers")
        out = site["tmp"] / "partner.jsonl"
        with open(out, "w", encoding="utf-8") as stream:
            other.export(stream, fmt="jsonl", include_restricted=True)
    return out


def test_updates_give_the_tables_of_a_full_build(site):
    first = _publish(site)
    assert first["build"] == "full" and first["reason"] is None
    steps = []

    def step(change):
        with Archive(site["db"]) as archive:
            change(archive)
        kept = site["tmp"] / f"before-{len(steps)}.db"
        os.link(site["out"], kept)  # the earlier file, as a server holding it would see it
        before = _sha256(kept)
        summary = _publish(site)
        assert summary["build"] == "incremental", summary.get("reason")
        assert _sha256(kept) == before  # only read: a copy was brought up to date
        assert _sha256(site["out"]) == summary["sha256"]
        steps.append(summary)

    def new_document(archive):
        doc = archive.ingest([_write(site["files"], "new.txt", "The right to life, liberty "
                                     "and security of person.\n")], by="reza")[0]
        archive.annotate(doc["id"], layer="claims", body="liberty claim", by="reza",
                         quote="liberty")

    def revisions(archive):
        archive.revise(1, body="a claim, checked", by="reza", tags=["rights", "checked"])
        archive.retract(2, by="ana", reason="duplicate")
        archive.annotate(None, layer=None, reply_to=1, body="a reply", by="omar")
        archive.revise(3, body="still protected", by="ana")  # on the restricted document

    def layers(archive):
        archive.add_layer("dates", by="ana", description="when things happened")
        archive.add_layer("unused", by="ana")  # kept: no annotation at all
        archive.add_layer("interviews", by="ana")  # used only on the restricted document
        archive.annotate(1, layer="dates", body="a date", by="ana", quote="Everyone")
        archive.annotate(site["secret"], layer="interviews", body="names", by="ana",
                         quote="officers")

    def version(archive):
        newer = _write(site["files"], "public-v2.txt",
                       "Preamble.\n" + PUBLIC + "This includes freedom to hold opinions.\n")
        [result] = archive.ingest([newer], by="ana", supersedes=site["public"])
        assert result["carried"]["carried"] >= 1

    def restricted_additions(archive):
        hidden = archive.ingest([_write(site["files"], "later.txt", LATER_SECRET)], by="ana",
                                restricted=True)[0]
        archive.annotate(hidden["id"], layer="claims", body="Okonkwo ledger", by="ana",
                         quote="second ledger")
        archive.ingest([site["files"] / "public.txt"], by="reza", source="second copy")
        secret_copy = _write(site["files"], "copy-of-public.txt", PUBLIC)
        archive.ingest([secret_copy], by="mallory", source="safe house Erbil", restricted=True)

    def imported(archive):
        [result] = archive.import_([_import_file(site)], by="omar")
        assert result["annotations"] == 2

    def mail_and_bag(archive):
        files = site["files"]
        (files / "mail.eml").write_bytes(_email("Annex: the right to work.\n"))
        (files / "sealed.eml").write_bytes(_email("Ledger names: Okonkwo and two others.\n"))
        archive.ingest([files / "mail.eml"], by="ana", source="mailbox")
        archive.ingest([files / "sealed.eml"], by="ana", source="safe mailbox", restricted=True)
        bag = site["tmp"] / "bag"
        with Archive(site["tmp"] / "partner-2.db") as partner:
            partner.ingest([_write(site["tmp"], "bagged.txt", "A bagged statement.\n")],
                           by="noor")
            partner.bag_export(bag, organization="Field office")
        archive.ingest([bag], by="ana")

    for change in (new_document, revisions, layers, version, restricted_additions, imported,
                   mail_and_bag):
        step(change)
    # the facade's last publish event is the archive's head now: once more, recording nothing
    assert _publish(site, facade=False)["build"] == "incremental"
    full = _full(site)
    assert_same_tables(site["out"], full)
    assert_verifies(site["out"])
    assert_verifies(full)
    assert_nothing_restricted(site["out"], "Okonkwo", "second ledger", "safe house Erbil",
                              "mallory", "imported note on officers", "interviews",
                              "Ledger names", "safe mailbox")
    conn = sqlite3.connect(site["out"])
    assert conn.execute("SELECT count(*) FROM events WHERE action = 'bag'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM documents WHERE parent IS NOT NULL").fetchone()[0] \
        == 1  # the public message's attachment; the sealed one's is withheld with it
    conn.close()
    conn = sqlite3.connect(site["out"])
    own = conn.execute("SELECT action, json_extract(details, '$.since.events'), "
                       "json_extract(details, '$.source.events') FROM events "
                       "WHERE action IN ('publish', 'publish-update') ORDER BY seq").fetchall()
    conn.close()
    assert [a for a, _, _ in own] == ["publish"] + ["publish-update"] * (len(steps) + 1)
    for (_, since, _), (_, _, before) in zip(own[1:], own):  # each update follows the last
        assert since == before
    # the summary: what was added, the head it started from
    assert steps[0]["added"] == {"documents": 1, "annotation_revisions": 1, "events": 2}
    assert steps[0]["since"]["events"] == first["source"]["events"]


def test_search_finds_what_an_update_added_and_not_what_it_replaced(site):
    _publish(site)
    with Archive(site["db"]) as archive:
        archive.revise(1, body="zanzibar accord", by="reza")
        archive.retract(2, by="ana", reason="wrong")
        doc = archive.ingest([_write(site["files"], "b.txt", "Kilimanjaro statement.\n")],
                             by="ana")[0]
    assert _publish(site)["build"] == "incremental"
    conn = sqlite3.connect(site["out"])

    def match(fts, word):
        return [r[0] for r in conn.execute(f"SELECT rowid FROM {fts} WHERE {fts} MATCH ?",
                                           (word,))]

    assert match("annotations_fts", "zanzibar") == [1]
    assert match("annotations_fts", "claim") == []  # the body it had before
    assert match("annotations_fts", "checked") == []  # annotation 2, retracted
    assert match("annotations_fts", "rights") == [1]  # its tags are still indexed
    assert match("documents_fts", "kilimanjaro") == [doc["id"]]
    conn.close()


@pytest.mark.parametrize("change, reason", [
    (lambda a, s: a.restrict(s["public"], reason="names a witness"),
     "(restrict) withholds document 1, which the snapshot holds"),
    (lambda a, s: a.unrestrict(s["secret"], reason="consent given"),
     "(unrestrict) publishes document 2, which the snapshot left out"),
    (lambda a, s: a.edit(s["public"], title="Statement of 13 August", reason="letterhead"),
     "(edit) changes the title or source of document 1, which the snapshot holds"),
    (lambda a, s: a.rename_layer("claims", "assertions", reason="clearer"),
     "(layer-rename) moves annotations to another layer"),
    (lambda a, s: a.merge_layers("protected-sources", "claims", reason="one layer"),
     "(layer-merge) moves annotations to another layer"),
])
def test_what_cannot_be_appended_is_built_whole_and_says_why(site, change, reason):
    _publish(site)
    with Archive(site["db"]) as archive:
        change(archive, site)
        archive.annotate(site["public"], layer="notes", body="later note", by="ana",
                         quote="opinion")
    summary = _publish(site, facade=False)
    assert summary["build"] == "full"
    assert summary["reason"].startswith("event ") and summary["reason"].endswith(reason)
    assert_same_tables(site["out"], _full(site))
    assert_verifies(site["out"])
    if "unrestrict" not in reason:
        assert_nothing_restricted(site["out"])
    # and the next change is appended again
    with Archive(site["db"]) as archive:
        archive.annotate(site["public"], layer="notes", body="one more", by="ana",
                         quote="expression")
    assert _publish(site, facade=False)["build"] == "incremental"
    assert_same_tables(site["out"], _full(site, "full-2.db"))


def test_an_edit_of_a_withheld_document_or_a_restrict_of_a_new_one_is_appended(site):
    """Only what the snapshot holds (or left out) matters: a withheld document edited stays
    withheld; a document ingested and restricted since was never in it."""
    _publish(site)
    with Archive(site["db"]) as archive:
        archive.edit(site["secret"], title="Interview 7", reason="a title")
        new = archive.ingest([_write(site["files"], "n.txt", "Brief note.\n")], by="ana")[0]
        archive.restrict(new["id"], reason="on second thought")
    summary = _publish(site, facade=False)
    assert summary["build"] == "incremental", summary["reason"]
    assert_same_tables(site["out"], _full(site))
    assert_nothing_restricted(site["out"], "Interview 7", "Brief note", "on second thought")


@pytest.mark.parametrize("layer, document, reason", [
    ("protected-sources", "public",
     "layer 'protected-sources', which the snapshot left out, now has published annotations"),
    ("unused", "secret", "layer 'unused' is now used only on withheld documents"),
])
def test_a_layer_kept_or_left_out_otherwise_is_built_whole(site, layer, document, reason):
    with Archive(site["db"]) as archive:
        archive.add_layer("unused", by="ana")  # kept: no annotation at all
    _publish(site)
    with Archive(site["db"]) as archive:
        archive.annotate(site[document], layer=layer, body="a note", by="ana", quote="officers"
                         if document == "secret" else "opinion")
    summary = _publish(site, facade=False)
    assert (summary["build"], summary["reason"]) == ("full", reason)
    assert_same_tables(site["out"], _full(site))
    data = site["out"].read_bytes()
    assert b"Abernathy" not in data and SECRET_BODY.encode() not in data


def test_full_rebuilds_on_request_and_from_another_version(site, run, monkeypatch):
    db = str(site["db"])
    out = site["out"]
    first = run("publish", out, db=db)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[2] == "built whole"
    again = run("publish", out, db=db)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[2].startswith("brought up to date from archive event ")
    assert again.output.splitlines()[2].endswith(": added 0 documents, 0 annotation revisions, "
                                                 "0 events")
    whole = run("publish", out, "--full", db=db)
    assert whole.output.splitlines()[2] == "built whole: a full build was asked for"
    monkeypatch.setattr(stet.publish, "__version__", "9.9.9")
    other = run("publish", out, "--json", db=db)
    summary = json.loads(other.output)
    assert summary["build"] == "full"
    assert summary["reason"] == ("archive.db was made by stet 0.1.0 (snapshot format "
                                 f"{stet.publish.FORMAT}); this is stet 9.9.9 (format "
                                 f"{stet.publish.FORMAT})")


def test_a_file_that_is_not_a_snapshot_of_this_archive_needs_force(site, tmp_path):
    other_db = tmp_path / "other.db"
    with Archive(other_db) as other:
        other.ingest([site["files"] / "public.txt"], by="ana")
    publish(other_db, site["out"])
    before = _sha256(site["out"])
    with pytest.raises(StetError, match="already exists"):
        _publish(site)
    assert _sha256(site["out"]) == before
    summary = _publish(site, force=True)
    assert summary["build"] == "full" and summary["reason"] is None
    assert_verifies(site["out"])


def test_an_unchanged_archive_leaves_the_file_as_it_is(site):
    publish(site["db"], site["out"])  # the library call records no event in the archive
    before = _sha256(site["out"]), os.stat(site["out"]).st_ino
    summary = publish(site["db"], site["out"])
    assert summary["build"] == "unchanged"
    assert (_sha256(site["out"]), os.stat(site["out"]).st_ino) == before
    assert summary["sha256"] == before[0]


@pytest.mark.parametrize("where", ["publish", "serve"])
def test_a_crash_midway_leaves_the_earlier_snapshot_and_nothing_else(site, monkeypatch, where):
    if where == "publish":
        _publish(site)
        folder, earlier = site["out"].parent, site["out"]
    else:
        with open_snapshot(site["db"]) as snapshot:
            folder, earlier = snapshot_folder(site["db"]), snapshot.path
    before = _sha256(earlier)
    with Archive(site["db"]) as archive:
        archive.annotate(site["public"], layer="claims", body="later", by="ana", quote="opinion")

    def crash(conn):
        raise RuntimeError("killed midway")

    monkeypatch.setattr(stet.publish, "_copy_events", crash)
    with pytest.raises(RuntimeError, match="killed midway"):
        if where == "publish":
            _publish(site)
        else:
            open_snapshot(site["db"])
    assert sorted(p.name for p in folder.iterdir()) == [earlier.name]
    assert _sha256(earlier) == before
    monkeypatch.undo()
    if where == "publish":
        assert _publish(site)["build"] == "incremental"
    else:
        with open_snapshot(site["db"]) as snapshot:
            assert snapshot.built["build"] == "incremental"


def test_the_serve_cache_is_brought_up_to_date_beside_the_one_served(site):
    with open_snapshot(site["db"]) as first:
        assert first.built["build"] == "full"
        held = _sha256(first.path)
        with Archive(site["db"]) as archive:
            archive.annotate(site["public"], layer="claims", body="later note", by="ana",
                             quote="opinion")
            archive.ingest([_write(site["files"], "c.txt", "Third document.\n")], by="ana")
        with open_snapshot(site["db"]) as second:
            assert second.built["build"] == "incremental"
            assert second.path != first.path and second.built["sha256"] is None
            assert _sha256(first.path) == held  # the served file: only read
            copy = site["tmp"] / "served.db"
            shutil.copyfile(second.path, copy)
        with open_snapshot(site["db"]) as third:
            assert third.path == second.path and third.built is None  # reused
    assert_same_tables(copy, _full(site))
    assert_verifies(copy)
    assert_nothing_restricted(copy)


def test_an_update_reports_every_step_of_the_progress(site):
    import contextlib

    counted = {}

    def progress(total):
        counted.update(total=total, advanced=0)

        @contextlib.contextmanager
        def bar():
            yield lambda n: counted.update(advanced=counted["advanced"] + n)

        return bar()

    _publish(site)
    with Archive(site["db"]) as archive:
        archive.annotate(site["public"], layer="claims", body="later", by="ana", quote="opinion")
    # the facade's publish event is one more event since: the library's second call has none
    for facade, build in ((True, "incremental"), (False, "incremental"), (False, "unchanged")):
        summary = _publish(site, progress=progress, facade=facade)
        assert summary["build"] == build
        assert counted["total"] == counted["advanced"] == stet.publish.STEPS
