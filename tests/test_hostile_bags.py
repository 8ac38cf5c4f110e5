"""Hostile bags and special files (issue 10, items 3, 5, 6, 7 and 8): each input crafted here.

A hang is shown impossible by outcome: the commands that met a FIFO run in a subprocess with
a generous timeout, and must finish with the expected error line (a timeout is the failure).
"""

import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import bagit
import pytest

import stet.ingest
import stet.ingest.paths
import stet.ingest.prepared
from stet.hashing import sha256_bytes

#: Far longer than any of these ingests takes; reaching it means stet waited on a FIFO.
TIMEOUT = 120


def count(db_path, table, where="1"):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
    finally:
        conn.close()


def make_bag(folder, files, checksums=("sha256",), info=None):
    """A bag at ``folder`` holding ``files`` ({name: bytes}), made by bagit-python itself."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    bagit.make_bag(str(folder), info or {}, checksums=list(checksums))
    return folder


def stet_process(*args, db, env=None, cwd):
    """``stet ARGS --db DB`` in a subprocess that may not outlive TIMEOUT."""
    environment = {**os.environ, "STET_USER": "tester", **(env or {})}
    environment.pop("STET_DB", None)
    return subprocess.run(
        [sys.executable, "-c", "from stet.cli import cli; cli()", *map(str, args), "--db", str(db)],
        capture_output=True, text=True, timeout=TIMEOUT, env=environment, cwd=cwd)


# -- item 3: bag-info.txt recorded once ---------------------------------------------------


def test_bag_info_is_recorded_once_and_each_file_points_at_it(run, tmp_path, db_path):
    marker = "a very long description" * 40_000  # ~1 MB of bag-info.txt
    files = {f"note-{n:02}.txt": f"note {n}\n".encode() for n in range(40)}
    bag = make_bag(tmp_path / "transfer", files,
                   info={"Internal-Sender-Description": marker, "External-Identifier": "t-7"})
    out = run("ingest", bag, "--json", "-s")
    assert out.exit_code == 0, out.stderr
    assert [json.loads(line)["status"] for line in out.stdout.splitlines()] == ["new"] * 40
    # once in the chain, not 40 times: the archive stays small
    assert count(db_path, "events", "instr(details, 'a very long description') > 0") == 1
    assert os.path.getsize(db_path) < 4 * len(marker)
    log = json.loads(run("log", "--json").stdout)
    event, ingests = log[0], log[1:]
    assert (event["action"], event["document"], event["subject"]) == ("bag", None, "bag:transfer")
    details = event["details"]
    assert details["path"] == str(bag) and details["name"] == "transfer"
    assert details["bagit_version"] == "0.97" and details["restricted"] is False
    assert details["bag_info"]["External-Identifier"] == "t-7"
    assert details["bag_info"]["Internal-Sender-Description"] == marker
    assert details["payload"] == {"files": 40, "bytes": sum(map(len, files.values()))}
    assert set(details["manifests"]) == {"manifest-sha256.txt", "tagmanifest-sha256.txt"}
    assert details["manifests"]["manifest-sha256.txt"] == \
        sha256_bytes((bag / "manifest-sha256.txt").read_bytes())
    assert [e["details"]["bag"] for e in ingests] == [
        {"event": event["seq"], "hash": event["hash"], "file": f"data/{name}"}
        for name in sorted(files)]
    assert run("verify").exit_code == 0


def test_a_restricted_bag_ingest_marks_its_bag_event_restricted(run, tmp_path):
    bag = make_bag(tmp_path / "sealed", {"a.txt": b"a witness"})
    assert run("ingest", bag, "--restricted", "-s").exit_code == 0
    event = json.loads(run("log", "--json").stdout)[0]
    assert event["action"] == "bag" and event["details"]["restricted"] is True


# -- item 5: FIFOs --------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"STET_WORKERS": "0"}, {"STET_WORKERS": "2"}, {}],
                         ids=["in-process", "worker-pool", "read-ahead"])
def test_a_link_to_a_fifo_is_an_error_line_and_the_rest_goes_on(tmp_path, env):
    folder = tmp_path / "seized"
    folder.mkdir()
    for n in range(70):  # enough files for the read-ahead worker (on two CPUs or more)
        (folder / f"file-{n:02}.txt").write_text(f"file {n}\n")
    os.mkfifo(folder / "pipe")  # a FIFO in the folder is no document: passed over...
    (folder / "link-to-pipe").symlink_to(folder / "pipe")  # ...but a link to it is opened
    os.mkfifo(tmp_path / "pipe")  # and so is one named on the command line
    result = stet_process("ingest", folder, tmp_path / "pipe", "--json", "-s",
                          db=tmp_path / "archive.db", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"Error: {folder / 'link-to-pipe'}: not a regular file\n"
                             f"Error: {tmp_path / 'pipe'}: not a regular file\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["new"] * 70 + ["error", "error"]


def test_reading_again_or_streaming_a_fifo_does_not_wait(tmp_path):
    """A file prepared, and the writer's own read (a large file streamed into the archive),
    meet a FIFO swapped in for the file."""
    os.mkfifo(tmp_path / "pipe")
    script = f"""
import sqlite3
from stet import Archive
from stet.ingest import FileChanged, Prepared, prepare
from stet.ingest.rows import stream_blob

pipe = {str(tmp_path / 'pipe')!r}
print(prepare(pipe).error)
with Archive({str(tmp_path / 'archive.db')!r}) as archive:
    archive.conn.execute("BEGIN")
    try:
        stream_blob(archive.conn, Prepared(path=pipe, filename="pipe", size=3, sha256="0" * 64))
    except FileChanged as exc:
        print(exc)
    archive.conn.execute("ROLLBACK")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=TIMEOUT, cwd=tmp_path)
    assert result.stderr == ""
    assert result.stdout == f"{tmp_path / 'pipe'}: not a regular file\n" * 2


def test_a_fifo_named_in_a_bag_manifest_refuses_the_bag(tmp_path):
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a", "pipe.txt": b""})
    (bag / "data" / "pipe.txt").unlink()
    os.mkfifo(bag / "data" / "pipe.txt")  # empty before: the Payload-Oxum still matches
    result = stet_process("ingest", bag, db=tmp_path / "archive.db", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"Error: invalid bag {bag}: data/pipe.txt (not a regular file)\n"
    assert count(tmp_path / "archive.db", "events") == 0


@pytest.mark.parametrize("name", ["bag-info.txt", "manifest-sha256.txt", "fetch.txt"])
def test_a_fifo_for_a_tag_file_refuses_the_bag(tmp_path, name):
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    if (bag / name).exists():
        (bag / name).unlink()
    os.mkfifo(bag / name)
    result = stet_process("ingest", bag, db=tmp_path / "archive.db", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"Error: invalid bag {bag}: {name}: not a regular file\n"


# -- item 6: a bag changed after validation -------------------------------------------------


def swap_after_validation(monkeypatch, name, data):
    """Validate the bag as stet does, then change one payload file before it is stored."""
    real = stet.ingest.paths.open_bag

    def open_then_swap(path):
        bag = real(path)
        (pathlib.Path(path) / "data" / name).write_bytes(data)
        return bag

    monkeypatch.setattr(stet.ingest.paths, "open_bag", open_then_swap)


@pytest.mark.parametrize("checksums", [("sha256",), ("sha512",), ("md5",)])
def test_a_payload_file_swapped_after_validation_refuses_the_bag(run, tmp_path, db_path,
                                                                  monkeypatch, checksums):
    bag = make_bag(tmp_path / "bag", {"a.txt": b"first", "b.txt": b"vouched", "c.txt": b"third"},
                   checksums=checksums)
    swap_after_validation(monkeypatch, "b.txt", b"swapped")  # same size: only bytes differ
    out = run("ingest", bag, "--json")
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr == (f"Error: invalid bag {bag}: data/b.txt: changed since the bag was "
                          "validated (its bytes are not the ones its manifest vouches for)\n")
    assert count(db_path, "events") == count(db_path, "documents") == 0  # not a.txt either


def test_a_large_payload_file_changed_while_stored_refuses_the_bag(run, tmp_path, db_path,
                                                                   monkeypatch):
    monkeypatch.setattr(stet.ingest.prepared, "SMALL_FILE", 16)  # every file streamed by the writer
    bag = make_bag(tmp_path / "bag", {"a.txt": b"first file, streamed",
                                      "b.txt": b"vouched for, then swapped"})
    real = stet.ingest.prepare

    def prepare_then_swap(path, location=None):
        item = real(path, location)
        if path.endswith("b.txt"):  # hashed as vouched for; the bytes stored are others
            with open(path, "r+b") as stream:
                stream.write(b"V")
        return item

    monkeypatch.setattr(stet.ingest, "prepare", prepare_then_swap)
    out = run("ingest", bag)
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr == (f"Error: invalid bag {bag}: data/b.txt: file changed while it was "
                          "being ingested\n")
    assert count(db_path, "events") == count(db_path, "blobs") == count(db_path, "blob_chunks") == 0


def test_a_bag_is_stored_in_one_unit_after_the_files_before_it(run, tmp_path, db_path,
                                                              monkeypatch):
    folder = tmp_path / "transfer"
    make_bag(folder / "bag", {"a.txt": b"vouched"})
    (folder / "loose.txt").write_text("loose file")
    swap_after_validation(monkeypatch, "a.txt", b"swapped")
    out = run("ingest", folder)
    assert out.exit_code == 1
    assert count(db_path, "events") == 0  # the bag came first, and stopped the ingest
    monkeypatch.undo()
    (folder / "bag" / "data" / "a.txt").write_bytes(b"vouched")
    make_bag(folder / "z-bag", {"z.txt": b"last"})
    out = run("ingest", folder, "--json")
    assert out.exit_code == 0, out.stderr
    log = json.loads(run("log", "--json").stdout)
    assert [(e["action"], e["details"].get("name")) for e in log] == [
        ("bag", "bag"), ("ingest", "bag/data/a.txt"), ("ingest", "loose.txt"),
        ("bag", "z-bag"), ("ingest", "z-bag/data/z.txt")]
    assert log[4]["details"]["bag"]["event"] == 4
    assert run("verify").exit_code == 0


# -- item 7: manifest entries leaving data/ -------------------------------------------------


def bag_with_entry(tmp_path, manifest, entry, data=b"outside the bag\n"):
    """A valid bag, then ``entry`` (with the right checksum of ``data``) added to
    ``manifest``; the file it reaches, beside the bag, holds ``data``."""
    bag = make_bag(tmp_path / "bag", {"a.txt": b"inside"})
    if "/" not in entry and "\\" not in entry:  # a tag file that only a payload manifest lists
        (bag / entry).write_bytes(data)
    outside = tmp_path / "bag-elsewhere"  # shares the bag's name as a prefix
    outside.mkdir()
    (outside / "x.txt").write_bytes(data)
    digest = sha256_bytes(data)
    with open(bag / manifest, "a", encoding="utf-8") as stream:
        stream.write(f"{digest}  {entry}\n")
    return bag


@pytest.mark.parametrize("manifest, entry, leaves", [
    ("manifest-sha256.txt", "data/../../bag-elsewhere/x.txt", "data/"),
    ("manifest-sha256.txt", "data/..\\..\\bag-elsewhere\\x.txt", "data/"),
    ("manifest-sha256.txt", "notes.txt", "data/"),
    ("tagmanifest-sha256.txt", "../bag-elsewhere/x.txt", "the bag"),
])
def test_a_manifest_entry_out_of_data_refuses_the_bag(run, tmp_path, db_path, manifest, entry,
                                                      leaves):
    bag = bag_with_entry(tmp_path, manifest, entry)
    out = run("ingest", bag)
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr == f"Error: invalid bag {bag}: {manifest}: {entry} leads out of {leaves}\n"
    assert count(db_path, "events") == 0


def test_an_entry_out_of_the_bag_is_refused_before_it_is_read(tmp_path):
    bag = bag_with_entry(tmp_path, "manifest-sha256.txt", "data/../../bag-elsewhere/pipe")
    os.mkfifo(tmp_path / "bag-elsewhere" / "pipe")  # reading it would wait forever
    result = stet_process("ingest", bag, db=tmp_path / "archive.db", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"Error: invalid bag {bag}: manifest-sha256.txt: "
                             "data/../../bag-elsewhere/pipe leads out of data/\n")


# -- item 8: fetch.txt ----------------------------------------------------------------------


def test_a_bag_with_files_to_fetch_is_refused_naming_them(run, tmp_path, db_path):
    bag = make_bag(tmp_path / "bag", {"a.txt": b"here"})
    (bag / "fetch.txt").write_text("".join(
        f"https://example.org/{n}.txt - data/later-{n}.txt\n" for n in range(7)))
    out = run("ingest", bag)
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr == (f"Error: invalid bag {bag}: not complete: fetch.txt lists 7 files to "
                          "fetch that the bag does not hold: data/later-0.txt, data/later-1.txt, "
                          "data/later-2.txt, data/later-3.txt, data/later-4.txt and 2 more\n")
    assert count(db_path, "events") == 0
    (bag / "fetch.txt").write_text("https://example.org/a.txt 4 data/a.txt\n"
                                   "https://example.org/b.txt - data/b.txt\n")
    out = run("ingest", bag)
    assert out.stderr == (f"Error: invalid bag {bag}: not complete: fetch.txt lists 1 file to "
                          "fetch that the bag does not hold: data/b.txt\n")


def test_a_bag_whose_fetched_files_are_all_there_is_complete(run, tmp_path):
    bag = make_bag(tmp_path / "bag", {"a.txt": b"here"})
    (bag / "fetch.txt").write_text("https://example.org/a.txt 4 data/a.txt\n")
    out = run("ingest", bag, "-s")
    assert out.exit_code == 0, out.stderr


@pytest.mark.parametrize("line, problem", [
    ("https://example.org/a.txt data/a.txt", "line 1 is not URL LENGTH FILENAME"),
    ("https://example.org/x - ../x.txt", "../x.txt leads out of data/"),
])
def test_a_malformed_fetch_txt_is_refused(run, tmp_path, line, problem):
    bag = make_bag(tmp_path / "bag", {"a.txt": b"here"})
    (bag / "fetch.txt").write_text(line + "\n")
    out = run("ingest", bag)
    assert out.exit_code == 1
    assert out.stderr == f"Error: invalid bag {bag}: fetch.txt: {problem}\n"
