"""Restricted stays restricted: each leak of issue 9 reproduced, and now failing safe.

Restriction, titles and sources change only by events (restrict, unrestrict, edit); the
public snapshot reads restriction from the chain and publishes no absolute path and nothing
a restricted submission recorded."""

import json
import sqlite3

import pytest

from stet import Archive
from stet.errors import InvalidInput, StetError
from stet.store import _append_only


def publish(source, out, **options):
    """Publish as ``stet publish`` does: through the facade, which records the event."""
    with Archive(source, create=False) as archive:
        return archive.publish(out, **options)


def _snapshot_bytes(path) -> bytes:
    return path.read_bytes()


def _events(path):
    conn = sqlite3.connect(path)
    try:
        return [(a, json.loads(d)) for a, d in
                conn.execute("SELECT action, details FROM events ORDER BY seq")]
    finally:
        conn.close()


@pytest.fixture
def folders(tmp_path):
    home = tmp_path / "home-ana" / "witnesses"
    (home / "public").mkdir(parents=True)
    (home / "secret-interviews").mkdir()
    (home / "public" / "statement.txt").write_text("A public statement.\n", encoding="utf-8")
    return home


def test_a_restricted_duplicate_of_a_public_document_records_nothing_public(folders, tmp_path, run):
    """Leak 1: the same bytes submitted again as restricted leaked the submission's path,
    source, actor and bag info into the public snapshot, and --restricted was ignored."""
    run("ingest", folders / "public", "--source", "press office")
    secret = folders / "secret-interviews" / "witness-karimi.txt"
    secret.write_bytes((folders / "public" / "statement.txt").read_bytes())
    result = run("ingest", secret, "--restricted", "--source", "safe house Erbil",
                 "--by", "agent-omid")
    assert result.exit_code == 0
    assert (f"Warning: {secret}: already public as document 1; it stays public "
            "(stet restrict 1)") in result.output
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    data = _snapshot_bytes(out)
    for secret_text in (b"witness-karimi", b"secret-interviews", b"safe house Erbil", b"agent-omid"):
        assert secret_text not in data
    assert [a for a, _ in _events(out)] == ["publish", "ingest"]


def test_a_new_version_of_a_restricted_document_is_restricted(folders, tmp_path, run):
    """Leak 2: `ingest v2 --supersedes N` of a restricted N gave a public document."""
    v1 = folders / "secret-interviews" / "v1.txt"
    v1.write_text("Testimony, first draft.\n", encoding="utf-8")
    v2 = folders / "secret-interviews" / "v2.txt"
    v2.write_text("Testimony, corrected.\n", encoding="utf-8")
    run("ingest", v1, "--restricted")
    run("ingest", v2, "--supersedes", "1")
    shown = json.loads(run("show", "2", "--json").output)
    assert shown["restricted"] is True and shown["supersedes"] == 1
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    assert b"corrected" not in _snapshot_bytes(out)
    # stet unrestrict is the only way out
    assert run("unrestrict", "2", "--reason", "cleared by counsel").exit_code == 0
    publish(tmp_path / "archive.db", out, force=True)
    assert b"Testimony, corrected." in _snapshot_bytes(out)
    assert b"Testimony, first draft." not in _snapshot_bytes(out)


def test_restrict_and_unrestrict_are_events_the_snapshot_follows(folders, tmp_path, run):
    """Item 5: restriction can change, each change an event with its reason."""
    run("ingest", folders / "public")
    assert run("restrict", "1", "--reason", "names a witness").output == \
        "document 1: restricted (event 2)\n"
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    assert b"A public statement." not in _snapshot_bytes(out)
    again = run("restrict", "1", "--reason", "twice")
    assert again.exit_code == 1 and again.output == "Error: document 1 is already restricted\n"
    no_reason = run("restrict", "1")
    assert no_reason.exit_code == 2 and "Missing option '--reason'" in no_reason.output
    empty = run("unrestrict", "1", "--reason", "  ")
    assert empty.exit_code == 1 and "a reason is required" in empty.output
    assert run("unrestrict", "1", "--reason", "consent given").exit_code == 0
    publish(tmp_path / "archive.db", out, force=True)
    assert b"A public statement." in _snapshot_bytes(out)
    actions = [(e["action"], e["details"].get("reason")) for e in
               json.loads(run("log", "--json").output)]
    assert actions == [("ingest", None), ("restrict", "names a witness"), ("publish", None),
                       ("unrestrict", "consent given"), ("publish", None)]
    with Archive(tmp_path / "archive.db") as archive:
        assert archive.verify() == []


def test_edit_keeps_every_value_on_record(folders, tmp_path, run):
    """Item 6: a correction is an event; the old value stays, shown by show --history and on
    the document page; the snapshot shows the current title."""
    run("ingest", folders / "public", "--source", "press office")
    result = run("edit", "1", "--title", "Statement of 13 August", "--source",
                 "https://example.org/press", "--reason", "title from the letterhead")
    assert result.output == "document 1: edited (event 2)\n"
    record = json.loads(run("show", "1", "--json", "--history").output)
    assert record["title"] == "Statement of 13 August"
    assert record["source"] == "https://example.org/press"
    assert [(h["action"], h["title"], h["source"], h["reason"]) for h in record["history"]] == [
        ("ingest", "statement.txt", "press office", None),
        ("edit", "Statement of 13 August", "https://example.org/press", "title from the letterhead"),
    ]
    text = run("show", "1", "--history").output
    assert "edit       by tester: title 'Statement of 13 August'" in text
    assert "(title from the letterhead)" in text
    nothing = run("edit", "1", "--reason", "no change")
    assert nothing.exit_code == 1 and "nothing to edit" in nothing.output
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT title, source FROM documents").fetchall() == [
        ("Statement of 13 August", "https://example.org/press")]
    conn.close()
    with Archive(tmp_path / "archive.db") as archive:
        assert next(archive.documents())["title"] == "Statement of 13 August"
        assert archive.verify() == []


def test_no_absolute_path_is_published(folders, tmp_path, run):
    """Item 7: events carried /home/NAME/...; the snapshot keeps the path relative to the
    folder that was ingested (or the file name); the private archive keeps it whole."""
    (folders / "public" / "sub").mkdir()
    (folders / "public" / "sub" / "note.txt").write_text("A note.\n", encoding="utf-8")
    single = tmp_path / "home-ana" / "loose.txt"
    single.write_text("Loose file.\n", encoding="utf-8")
    run("ingest", folders / "public")
    run("ingest", single)
    private = [e["details"]["path"] for e in json.loads(run("log", "--json").output)]
    assert private == [str(folders / "public" / "statement.txt"),
                       str(folders / "public" / "sub" / "note.txt"), str(single)]
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    assert str(tmp_path).encode() not in _snapshot_bytes(out)
    assert b"home-ana" not in _snapshot_bytes(out)
    assert [d["path"] for a, d in _events(out) if a == "ingest"] == [
        "statement.txt", "sub/note.txt", "loose.txt"]


def _without_triggers(path, table, sql):
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TRIGGER {table}_no_update")
    conn.execute(sql)
    conn.commit()
    conn.executescript(_append_only(table))
    conn.close()


def test_publish_takes_restriction_from_the_chain_not_the_row(folders, tmp_path, run):
    """documents.restricted flipped from 1 to 0 (triggers dropped and restored): the next
    publish still leaves the document out, because the chain says restricted."""
    secret = folders / "secret-interviews" / "w.txt"
    secret.write_text("The witness's name is here.\n", encoding="utf-8")
    run("ingest", secret, "--restricted")
    _without_triggers(tmp_path / "archive.db", "documents",
                      "UPDATE documents SET restricted = 0")
    out = tmp_path / "site.db"
    summary = publish(tmp_path / "archive.db", out)
    assert summary["left_out"]["documents"] == 1
    assert b"witness's name" not in _snapshot_bytes(out)


def test_publish_refuses_an_event_rewritten_with_a_duplicate_key(folders, tmp_path, run):
    """{"restricted":false,...,"restricted":true}: Python keeps the last key (the hash still
    matches), SQLite's json_extract the first. Publishing stops instead of leaking."""
    secret = folders / "secret-interviews" / "w.txt"
    secret.write_text("The witness's name is here.\n", encoding="utf-8")
    run("ingest", secret, "--restricted")
    conn = sqlite3.connect(tmp_path / "archive.db")
    (details,) = conn.execute("SELECT details FROM events WHERE seq = 1").fetchone()
    conn.close()
    forged = '{"restricted":false,' + details[1:]
    assert json.loads(forged) == json.loads(details)  # the hash Python computes is unchanged
    _without_triggers(tmp_path / "archive.db", "events",
                      f"UPDATE events SET details = '{forged}' WHERE seq = 1")
    with pytest.raises(StetError, match="event 1 of the archive was altered"):
        publish(tmp_path / "archive.db", tmp_path / "site.db")
    assert not (tmp_path / "site.db").exists()
    result = run("publish", tmp_path / "site.db")
    assert result.exit_code == 1 and result.output.startswith("Error: event 1 of the archive")


def test_unrestricting_a_message_unrestricts_the_attachments_it_restricted(tmp_path, run):
    """An attachment inherits its message's restriction at ingest; unrestricting the message
    releases the attachments restricted only because of it."""
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "Report"
    message.set_content("See the attached report.")
    message.add_attachment(b"Attached findings.\n", maintype="text", subtype="plain",
                           filename="findings.txt")
    path = tmp_path / "mail.eml"
    path.write_bytes(bytes(message))
    run("ingest", path, "--restricted")
    docs = json.loads(run("documents", "--json").output)
    assert [(d["id"], d["parent"], d["restricted"]) for d in docs] == [(1, None, True), (2, 1, True)]
    child = run("unrestrict", "2", "--reason", "only the attachment")
    assert child.exit_code == 1
    assert "attachment of document 1, which is restricted" in child.output
    result = run("unrestrict", "1", "--reason", "cleared")
    assert "document 2: unrestricted with it" in result.output
    assert all(not d["restricted"] for d in json.loads(run("documents", "--json").output))
    with Archive(tmp_path / "archive.db") as archive:
        assert archive.verify() == []


def test_state_changes_refuse_bad_input_and_write_nothing(folders, tmp_path, run):
    run("ingest", folders / "public")
    before = run("log", "--json").output
    with Archive(tmp_path / "archive.db") as archive:
        with pytest.raises(InvalidInput, match="a title cannot be empty"):
            archive.edit(1, title=" ", reason="r")
        with pytest.raises(InvalidInput, match="already has that title"):
            archive.edit(1, title="statement.txt", reason="r")
    missing = run("restrict", "99", "--reason", "x")
    assert missing.exit_code == 1 and missing.output == "Error: no document 99\n"
    assert run("log", "--json").output == before


@pytest.mark.asyncio
async def test_the_document_page_shows_corrections_and_hides_by_the_chain(folders, tmp_path, run):
    """The page lists every title the document had; on a Datasette pointed at a live archive
    the plugin hides a document restricted by an event, whatever its documents row says."""
    from stet.serve import make_datasette

    run("ingest", folders / "public")
    secret = folders / "secret-interviews" / "w.txt"
    secret.write_text("Restricted later.\n", encoding="utf-8")
    run("ingest", secret)
    run("edit", "1", "--title", "Statement <of> 13 August", "--reason", "letterhead & date")
    run("restrict", "2", "--reason", "names a witness")
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    page = (await make_datasette(out).client.get("/-/documents/1")).text
    assert 'id="metadata-history"' in page
    assert "<q>statement.txt</q>" in page and "<q>Statement &lt;of&gt; 13 August</q>" in page
    assert "(letterhead &amp; date)" in page
    live = make_datasette(tmp_path / "archive.db")
    assert (await live.client.get("/-/documents/2")).status_code == 404
    assert (await live.client.get("/-/documents/2/raw")).status_code == 404
    assert (await live.client.get("/-/documents/1")).status_code == 200


def test_a_bags_event_is_published_by_name_only_and_never_for_a_restricted_bag(tmp_path, run):
    import bagit

    bags = tmp_path / "home-ana" / "transfers"
    for name, text in (("open-bag", "Open report.\n"), ("closed-bag", "Closed report.\n")):
        (bags / name).mkdir(parents=True)
        (bags / name / "r.txt").write_text(text, encoding="utf-8")
        bagit.make_bag(str(bags / name), {"Source-Organization": f"org of {name}"},
                       checksums=["sha256"])
    run("ingest", bags / "open-bag")
    run("ingest", bags / "closed-bag", "--restricted")
    out = tmp_path / "site.db"
    publish(tmp_path / "archive.db", out)
    events = _events(out)
    bag_events = [d for a, d in events if a == "bag"]
    assert [d["path"] for d in bag_events] == ["open-bag"]
    assert bag_events[0]["bag_info"]["Source-Organization"] == "org of open-bag"
    data = _snapshot_bytes(out)
    assert b"org of closed-bag" not in data and b"closed-bag" not in data
    assert str(tmp_path).encode() not in data
