"""BagIt: export that the Library of Congress validator accepts; ingest that validates first."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import bagit
import pytest

from stet.bags import payload_name


def bagit_validate(path) -> subprocess.CompletedProcess:
    """The Library of Congress validator itself: ``bagit.py --validate``."""
    return subprocess.run([sys.executable, "-m", "bagit", "--validate", str(path)],
                          capture_output=True, text=True)


def count(db_path, table):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def collection(run, tmp_path):
    """Three documents, two of them with the same file name."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    (src / "a" / "statement.txt").write_text("بیانیه‌ی اول", encoding="utf-8")
    (src / "b" / "statement.txt").write_text("second statement", encoding="utf-8")
    (src / "b" / "STATEMENT.TXT").write_text("third, by case", encoding="utf-8")
    out = run("ingest", src, "-s", "--source", "field office")
    assert out.exit_code == 0, out.stderr
    return src


# -- export ---------------------------------------------------------------------------------


def test_export_passes_the_library_of_congress_validator(run, collection, tmp_path):
    target = tmp_path / "bag"
    out = run("bag", "export", target, "--organization", "Field office, Erbil",
              "--identifier", "transfer-42", "--json")
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["documents"] == 3
    check = bagit_validate(target)
    assert check.returncode == 0, check.stderr
    assert "is valid" in check.stderr

    bag = bagit.Bag(str(target))
    assert set(bag.algorithms) == {"sha256", "sha512"}
    for name in ("manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt",
                 "tagmanifest-sha512.txt", "bag-info.txt", "stet-documents.jsonl"):
        assert (target / name).is_file(), name
    assert bag.info["Source-Organization"] == "Field office, Erbil"
    assert bag.info["External-Identifier"] == "transfer-42"
    assert bag.info["Payload-Oxum"] == f"{summary['bytes']}.3"
    assert len(bag.info["Bagging-Date"]) == 10
    assert "stet-documents.jsonl" in (target / "tagmanifest-sha512.txt").read_text()

    # original names, collisions resolved (ignoring case), bytes as archived
    names = sorted(p.name for p in (target / "data").iterdir())
    assert names == ["STATEMENT (2).TXT", "statement (3).txt", "statement.txt"]
    assert (target / "data" / "statement.txt").read_text(encoding="utf-8") == "بیانیه‌ی اول"

    records = [json.loads(line) for line in
               (target / "stet-documents.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["payload"] for r in records] == [f"data/{n}" for n in
                                               ("statement.txt", "STATEMENT (2).TXT", "statement (3).txt")]
    first = records[0]
    assert first["text"]["text"] == "بیانیه‌ی اول" and first["document"]["source"] == "field office"
    assert first["events"][0]["action"] == "ingest" and len(first["events"][0]["hash"]) == 64


def test_export_is_a_read_and_selects_documents(run, collection, tmp_path, db_path):
    events = count(db_path, "events")
    out = run("bag", "export", tmp_path / "one", "2")
    assert out.exit_code == 0, out.stderr
    assert count(db_path, "events") == events  # no event: the archive does not change
    assert [p.name for p in (tmp_path / "one" / "data").iterdir()] == ["STATEMENT.TXT"]
    assert bagit_validate(tmp_path / "one").returncode == 0


def test_export_refuses_a_folder_that_is_not_empty(run, collection, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "x").write_text("x")
    out = run("bag", "export", target)
    assert out.exit_code == 1
    assert out.stderr == f"Error: {target}: exists and is not an empty folder\n"
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith("archive.db")) == [
        "busy", "src"]  # no partial bag left behind


@pytest.mark.parametrize("given, expected", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", ".._.._etc_passwd"),
    ("a\nb.txt", "a_b.txt"),
    ("..", "__"),
    ("", "document"),
])
def test_payload_names_are_safe(given, expected):
    assert payload_name(given, set()) == expected


def test_payload_names_ignore_normalization_and_case():
    taken = set()
    assert payload_name("Nu\u0301n\u0303ez.txt", taken) == "Nu\u0301n\u0303ez.txt"
    assert payload_name("n\u00fa\u00f1ez.TXT", taken) == "n\u00fa\u00f1ez (2).TXT"
    assert payload_name("README", taken) == "README"
    assert payload_name("readme", taken) == "readme (2)"


# -- ingest ---------------------------------------------------------------------------------


def test_round_trip_records_bag_info_in_provenance(run, collection, tmp_path):
    target = tmp_path / "bag"
    assert run("bag", "export", target, "--identifier", "transfer-42").exit_code == 0
    other = str(tmp_path / "other.db")
    out = run("ingest", target, "--json", db=other)
    assert out.exit_code == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(target / "data" / n) for n in
                                            ("STATEMENT (2).TXT", "statement (3).txt", "statement.txt")]
    assert {r["status"] for r in records} == {"new"}
    log = json.loads(run("log", "--json", db=other).stdout)
    # the bag recorded once, in its own event; each payload file's event points at it
    assert [e["action"] for e in log] == ["bag", "ingest", "ingest", "ingest"]
    bag = log[0]["details"]
    assert log[0]["document"] is None and bag["path"] == str(target) and bag["name"] == "bag"
    assert bag["bag_info"]["External-Identifier"] == "transfer-42"
    assert bag["bag_info"]["Payload-Oxum"].endswith(".3")
    assert bag["payload"]["files"] == 3 and bag["restricted"] is False
    assert log[1]["details"]["bag"] == {"event": 1, "hash": log[0]["hash"],
                                        "file": "data/STATEMENT (2).TXT"}
    assert run("verify", db=other).exit_code == 0


def test_a_corrupt_bag_is_refused_whole_naming_the_files(run, collection, tmp_path, db_path):
    target = tmp_path / "bag"
    assert run("bag", "export", target).exit_code == 0
    # same size, other bytes: the Payload-Oxum still matches, only the checksums can tell
    path = target / "data" / "statement.txt"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    before = (count(db_path, "events"), count(db_path, "documents"))
    out = run("ingest", target, "--json")
    assert out.exit_code == 1
    assert out.stdout == ""
    assert out.stderr == (f"Error: invalid bag {target}: data/statement.txt "
                          "(sha256 mismatch, sha512 mismatch)\n")
    assert (count(db_path, "events"), count(db_path, "documents")) == before


def test_a_bag_inside_a_folder_is_found_and_validated(run, collection, tmp_path):
    transfer = tmp_path / "transfer"
    transfer.mkdir()
    assert run("bag", "export", transfer / "bag").exit_code == 0
    (transfer / "loose.txt").write_text("loose file", encoding="utf-8")
    other = str(tmp_path / "other.db")
    out = run("ingest", transfer, "--json", db=other)
    assert out.exit_code == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 4 and records[-1]["path"].endswith("loose.txt")
    log = json.loads(run("log", "--json", db=other).stdout)
    assert [(e["action"], "bag" in e["details"]) for e in log] == [
        ("bag", False), ("ingest", True), ("ingest", True), ("ingest", True), ("ingest", False)]
    (transfer / "bag" / "data" / "extra.txt").write_text("smuggled")
    out = run("ingest", transfer, db=str(tmp_path / "third.db"))
    assert out.exit_code == 1
    assert out.stderr == (f"Error: invalid bag {transfer / 'bag'}: data/extra.txt "
                          "(on disk, not in the manifest); Payload-Oxum "
                          f"{bagit.Bag(str(transfer / 'bag')).info['Payload-Oxum']} does not "
                          "match the payload (62 bytes in 4 files)\n")


# -- the Library of Congress conformance suite ----------------------------------------------


def conformance_bags(shared, kind):
    root = shared / "conformance" / "bagit"
    found = []
    for version in sorted(root.glob("v*")):
        for folder in [version / kind] + ([version / "linux-only"] if kind == "invalid" else []):
            if folder.is_dir():
                found += sorted(p for p in folder.iterdir() if p.is_dir())
    return found


def test_conformance_valid_bags_ingest(shared, run, tmp_path):
    bags = conformance_bags(shared, "valid")
    assert len(bags) >= 20
    for bag in bags:
        copy = tmp_path / "valid" / bag.parent.parent.name / bag.name
        shutil.copytree(bag, copy, symlinks=True)
        db = str(tmp_path / f"{bag.parent.parent.name}-{bag.name}.db")
        out = run("ingest", copy, "--json", "-s", db=db)
        assert out.exit_code == 0, (bag, out.stderr)
        records = [json.loads(line) for line in out.stdout.splitlines()]
        payload = sorted(bagit.Bag(str(copy)).payload_files())
        assert [r["path"] for r in records] == [str(copy / p) for p in payload], bag
        assert all(r["status"] in ("new", "duplicate") for r in records), bag


def test_conformance_invalid_bags_are_refused(shared, run, tmp_path):
    bags = conformance_bags(shared, "invalid")
    assert len(bags) >= 15
    for bag in bags:
        db = str(tmp_path / f"{bag.parent.parent.name}-{bag.name}.db")
        out = run("ingest", bag, "--json", "-s", db=db)
        assert out.exit_code == 1, bag
        assert out.stdout == "", bag
        assert out.stderr.startswith(f"Error: invalid bag {bag}: "), (bag, out.stderr)
        assert out.stderr.count("\n") == 1, bag
        assert count(db, "events") == 0, bag


def test_a_bag_with_a_link_out_of_it_is_refused(run, tmp_path, db_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the bag")
    bag_dir = tmp_path / "linked"
    bag_dir.mkdir()
    (bag_dir / "inside.txt").write_text("inside")
    os.symlink(secret, bag_dir / "escape.txt")
    with pytest.raises(bagit.BagError):  # written, then refused when bagit reads it back
        bagit.make_bag(str(bag_dir), checksums=["sha256"])
    out = run("ingest", bag_dir)
    assert out.exit_code == 1
    assert out.stderr == (f'Error: invalid bag {bag_dir}: Path "data/escape.txt" in manifest '
                          '"manifest-sha256.txt" is unsafe\n')
    assert count(db_path, "events") == 0


# -- restriction and provenance (issue 9, leaks 3 and 4) ------------------------------------


def state(db_path):
    """Each document's current state in an archive, by file name: (title, source, restricted,
    the file name of its message)."""
    conn = sqlite3.connect(db_path)
    try:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT d.filename, s.title, s.source, s.restricted, p.filename FROM documents d "
            "JOIN document_state s ON s.document = d.id LEFT JOIN documents p ON p.id = d.parent")}
    finally:
        conn.close()


def sealed_email() -> bytes:
    """A message with one text attachment of its own."""
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "witness@example.org"
    message["Subject"] = "شهادت"
    message.set_content("See the attached notes.\n")
    message.add_attachment("notes of the interview\n".encode(), maintype="text",
                           subtype="plain", filename="notes.txt")
    return message.as_bytes()


@pytest.fixture
def mixed(run, tmp_path, db_path):
    """1 public.txt (its title edited), 2 secret.txt (ingested restricted), 3 later.txt
    (restricted by an event), 4 mail.eml (public) with attachments 5 بیانیه.docx and
    6 data.bin, 7 sealed.eml (ingested restricted) with its attachment 8 notes.txt."""
    from test_extract_formats import make_email

    src = tmp_path / "src"
    src.mkdir()
    (src / "public.txt").write_text("a public statement", encoding="utf-8")
    (src / "secret.txt").write_text("a witness's name", encoding="utf-8")
    (src / "later.txt").write_text("restricted later", encoding="utf-8")
    (src / "mail.eml").write_bytes(make_email())
    (src / "sealed.eml").write_bytes(sealed_email())
    for name, *flags in (("public.txt", "--source", "press office"),
                         ("secret.txt", "--restricted", "--source", "witness"),
                         ("later.txt", "--source", "field office"),
                         ("mail.eml", "--source", "mailbox"),
                         ("sealed.eml", "--restricted", "--source", "mailbox")):
        out = run("ingest", src / name, "-s", *flags)
        assert out.exit_code == 0, out.stderr
    assert run("restrict", "3", "--reason", "names a witness").exit_code == 0
    assert run("edit", "1", "--title", "Statement of 2014", "--reason", "typo").exit_code == 0
    assert list(state(db_path)) == ["public.txt", "secret.txt", "later.txt", "mail.eml",
                                    "بیانیه.docx", "data.bin", "sealed.eml", "notes.txt"]
    return src


def tag_records(bag):
    return [json.loads(line) for line in
            (bag / "stet-documents.jsonl").read_text(encoding="utf-8").splitlines()]


def test_bag_export_leaves_restricted_documents_out_and_says_so(run, mixed, tmp_path):
    target = tmp_path / "bag"
    out = run("bag", "export", target, "--json")
    assert out.exit_code == 0, out.stderr
    assert out.stderr == ("Warning: left out 4 restricted documents "
                          "(--include-restricted to include them)\n")
    summary = json.loads(out.stdout)
    assert (summary["documents"], summary["left_out"]) == (4, 4)
    assert sorted(p.name for p in (target / "data").iterdir()) == [
        "data.bin", "mail.eml", "public.txt", "بیانیه.docx"]
    assert bagit_validate(target).returncode == 0
    records = tag_records(target)
    assert {r["state"]["hidden"] for r in records} == {False}
    text = (target / "stet-documents.jsonl").read_text(encoding="utf-8")
    assert "witness" not in text and "restricted later" not in text and "notes" not in text
    out = run("bag", "export", tmp_path / "named", "1", "4")
    assert out.exit_code == 0 and out.stderr == ""  # nothing hidden among them


def test_bag_export_of_a_named_restricted_document_is_an_error(run, mixed, tmp_path):
    target = tmp_path / "bag"
    for doc in ("2", "3", "8"):  # restricted, restricted by an event, an attachment of one
        out = run("bag", "export", target, "1", doc)
        assert out.exit_code == 1
        assert out.stderr == (f"Error: document {doc} is restricted: give --include-restricted "
                              "to export it\n")
        assert not target.exists()
    out = run("bag", "export", target, "3", "--include-restricted", "--json")
    assert out.exit_code == 0 and out.stderr == ""
    assert [p.name for p in (target / "data").iterdir()] == ["later.txt"]


def test_a_restricted_submission_of_public_bytes_stays_out_of_the_bag(run, mixed, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "leak.txt").write_text("a public statement", encoding="utf-8")
    out = run("ingest", copy / "leak.txt", "--restricted", "--source", "informant", "-s")
    assert out.exit_code == 0, out.stderr
    assert run("bag", "export", tmp_path / "bag", "1").exit_code == 0
    [record] = tag_records(tmp_path / "bag")
    assert [e["action"] for e in record["events"]] == ["ingest", "edit"]
    assert "informant" not in json.dumps(record)
    assert run("bag", "export", tmp_path / "all", "1", "--include-restricted").exit_code == 0
    [record] = tag_records(tmp_path / "all")
    assert [e["action"] for e in record["events"]] == ["ingest", "edit", "ingest-duplicate"]


def test_a_round_trip_keeps_restriction_provenance_and_attachments(run, mixed, tmp_path,
                                                                   db_path):
    before = state(db_path)
    assert before["later.txt"] == ("later.txt", "field office", 1, None)  # by an event
    assert before["public.txt"][0] == "Statement of 2014"  # edited
    assert before["notes.txt"][1:] == ("mailbox", 1, "sealed.eml")  # as its message
    target = tmp_path / "bag"
    out = run("bag", "export", target, "--include-restricted")
    assert out.exit_code == 0 and out.stderr == ""
    later = next(r for r in tag_records(target) if r["document"]["filename"] == "later.txt")
    assert later["document"]["restricted"] is False  # as ingested; then restricted
    assert later["state"] == {"title": "later.txt", "source": "field office",
                              "restricted": True, "hidden": True}

    other = str(tmp_path / "other.db")
    out = run("ingest", target, "--json", "--by", "receiver", db=other)
    assert out.exit_code == 0, out.stderr
    results = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.stdout.splitlines())}
    # each message before its attachments, whose own payload files are then duplicates
    assert [results[n]["status"] for n in ("mail.eml", "data.bin", "sealed.eml", "notes.txt")] \
        == ["new", "duplicate", "new", "duplicate"]
    assert state(other) == before  # restriction, titles, sources, message/attachment links
    assert run("verify", db=other).exit_code == 0

    conn = sqlite3.connect(db_path)
    original = {row[0]: row[1:] for row in conn.execute(
        "SELECT filename, id, ingested_by, ingested_at, parent FROM documents")}
    conn.close()
    head = json.loads(run("log", "--head", "--json").stdout)
    log = json.loads(run("log", "--json", db=other).stdout)
    assert {e["actor"] for e in log} == {"receiver"}  # the new ingest, a new event
    kept = {e["details"]["filename"]: e["details"]["original"]
            for e in log if "original" in e["details"]}
    assert set(kept) == set(original)  # attachments: in their own file's duplicate event
    for name, (doc_id, by, at, parent) in original.items():
        assert (kept[name]["id"], kept[name]["ingested_by"], kept[name]["ingested_at"],
                kept[name]["parent"]) == (doc_id, by, at, parent)
        assert kept[name]["events"][0]["actor"] == "tester"
        assert kept[name]["archive_event_head"] == f"{head['length']} {head['head']}"
    assert [e["action"] for e in kept["later.txt"]["events"]] == ["ingest", "restrict"]
    assert kept["later.txt"]["source"] == "field office" and not kept["later.txt"].get("restricted")


def test_an_attachment_restricted_alone_stays_restricted(run, mixed, tmp_path, db_path):
    assert run("restrict", "5", "--reason", "a private letter").exit_code == 0
    target = tmp_path / "bag"
    out = run("bag", "export", target, "4", "--json")
    assert json.loads(out.stdout)["left_out"] == 1
    assert run("bag", "export", tmp_path / "all", "4", "--include-restricted").exit_code == 0
    other = str(tmp_path / "other.db")
    out = run("ingest", tmp_path / "all", "-s", db=other)
    assert out.exit_code == 0, out.stderr
    assert "already public" not in out.stderr
    after = state(other)
    assert after["بیانیه.docx"][2] == 1  # restricted, as in the archive it came from
    assert after["mail.eml"][2] == 0 and after["data.bin"][2:] == (0, "mail.eml")


def write_tag_file(bag, text):
    (bag / "stet-documents.jsonl").write_text(text, encoding="utf-8")
    bagit.Bag(str(bag)).save()  # the tag manifests vouch for it again: only stet can tell


@pytest.mark.parametrize("damage, problem", [
    (lambda lines: ["{not json"] + lines[1:], "line 1: not a JSON object"),
    (lambda lines: lines[1:], "no record for data/"),
    (lambda lines: lines + lines[:1], "a second record for data/"),
    (lambda lines: [lines[0].replace('"restricted": true', '"restricted": "no"', 1)
                    .replace('"restricted": false', '"restricted": "no"', 1)] + lines[1:],
     "line 1: data/"),
    (lambda lines: [json.dumps({**json.loads(lines[0]), "payload": "data/../../etc/passwd"})]
     + lines[1:], "line 1: payload 'data/../../etc/passwd' is not a payload file of the bag"),
    (lambda lines: ['{"payload": "x", "payload": "y"}'] + lines[1:], "duplicate key 'payload'"),
])
def test_a_malformed_stet_tag_file_refuses_the_bag_whole(run, mixed, tmp_path, damage, problem):
    target = tmp_path / "bag"
    assert run("bag", "export", target, "--include-restricted").exit_code == 0
    lines = (target / "stet-documents.jsonl").read_text(encoding="utf-8").splitlines()
    write_tag_file(target, "\n".join(damage(lines)) + "\n")
    assert bagit_validate(target).returncode == 0  # a valid bag, but not a valid stet bag
    other = str(tmp_path / "other.db")
    out = run("ingest", target, "--json", db=other)
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr.startswith(f"Error: invalid bag {target}: stet-documents.jsonl: ")
    assert problem in out.stderr and out.stderr.count("\n") == 1
    assert count(other, "events") == count(other, "documents") == 0


def test_a_stet_tag_file_no_manifest_covers_is_refused(run, collection, tmp_path):
    target = tmp_path / "bag"
    assert run("bag", "export", target).exit_code == 0
    for name in ("tagmanifest-sha256.txt", "tagmanifest-sha512.txt"):
        path = target / name
        path.write_text("".join(line for line in path.read_text().splitlines(True)
                                if "stet-documents.jsonl" not in line))
    out = run("ingest", target, db=str(tmp_path / "other.db"))
    assert out.exit_code == 1
    assert out.stderr == (f"Error: invalid bag {target}: stet-documents.jsonl: not in a tag "
                          "manifest, so nothing vouches for it\n")


def test_a_bag_without_the_stet_tag_file_ingests_as_any_bag(run, mixed, tmp_path):
    target = tmp_path / "bag"
    assert run("bag", "export", target, "--include-restricted").exit_code == 0
    (target / "stet-documents.jsonl").unlink()
    bagit.Bag(str(target)).save()
    other = str(tmp_path / "other.db")
    out = run("ingest", target, "-s", db=other)
    assert out.exit_code == 0, out.stderr
    log = json.loads(run("log", "--json", db=other).stdout)
    assert log[0]["action"] == "bag"
    assert all("original" not in e["details"] and "bag" in e["details"] for e in log[1:])
    assert {row[2] for row in state(other).values()} == {0}  # nothing says otherwise


def test_the_private_bagit_methods_stet_relies_on_exist():
    """bagit is pinned below 2 in pyproject.toml; this fails first if a release drops one."""
    import bagit

    from stet.bags import BAGIT_PRIVATE

    for name in BAGIT_PRIVATE:
        assert callable(getattr(bagit.Bag, name, None)), name
