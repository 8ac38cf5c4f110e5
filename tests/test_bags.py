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
    assert sorted(os.listdir(tmp_path)) == ["archive.db", "archive.db-shm", "archive.db-wal",
                                            "busy", "src"]


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
    bag = log[0]["details"]["bag"]
    assert bag["path"] == str(target) and bag["file"] == "data/STATEMENT (2).TXT"
    assert bag["bag_info"]["External-Identifier"] == "transfer-42"
    assert bag["bag_info"]["Payload-Oxum"].endswith(".3")
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
    assert [("bag" in e["details"]) for e in log] == [True, True, True, False]
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
