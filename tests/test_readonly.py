"""Read commands never write (DESIGN.md, invariant 9): every command that does not write
leaves the archive file byte-identical and creates nothing beside it, on a published
snapshot (rollback-journal mode) and on a quiescent live archive (WAL mode, no -wal/-shm).
Also: `stet log --head`, `stet verify --expect-head`, and verify on a damaged schema."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from stet import Archive
from stet.cli import cli
from stet.timeutil import iso, now

FREEDOM = "Freedom of expression is a human right.\n"
PERSIAN = "آزادی بیان حق هر انسانی است.\n"


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quiesce(db: Path) -> None:
    """Copy the WAL into the file and close: SQLite deletes -wal and -shm on the last close."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.fixture
def site(tmp_path):
    """A live archive (documents, a layer, an annotation revised once) and its snapshot, each
    alone in its folder; the outputs of the commands go to a third folder."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "freedom.txt").write_text(FREEDOM, encoding="utf-8")
    (files / "fa.txt").write_text(PERSIAN, encoding="utf-8")
    live = tmp_path / "live" / "archive.db"
    live.parent.mkdir()
    with Archive(live) as archive:
        doc = archive.ingest([files / "freedom.txt"], by="ana", source="field office")[0]
        archive.ingest([files / "fa.txt"], by="ana")
        archive.add_layer("claims", by="ana")
        ann = archive.annotate(doc["id"], layer="claims", body="a claim", by="ana",
                               quote="human right")
        between = iso(now())
        archive.revise(ann["id"], body="a claim, checked", by="reza")
    snapshot = tmp_path / "site" / "archive.db"
    snapshot.parent.mkdir()
    result = _run("publish", snapshot, "--db", live)
    assert result.exit_code == 0, result.output
    _quiesce(live)
    out = tmp_path / "out"
    out.mkdir()
    return {"live": live, "snapshot": snapshot, "out": out, "doc": doc["id"], "ann": ann["id"],
            "at": between, "tmp": tmp_path}


def _serve_prepare(db: Path, site) -> None:
    """`stet serve`'s look at the archive, with its cached snapshot (beside the archive, as
    ARCHIVE-public) already current: only the source's chain head is read."""
    from stet.serve import prepare

    from stet.snapshots import ensure_snapshot

    copy = site["tmp"] / "copy" / db.name  # built from a copy, so the source stays untouched
    copy.parent.mkdir()
    shutil.copyfile(db, copy)
    built = ensure_snapshot(copy, db.with_name(db.name + "-public"))
    before = (_sha256(built), built.stat().st_ino)
    _, served = prepare(db)
    assert Path(served) == built  # reused, not rebuilt
    assert (_sha256(built), built.stat().st_ino) == before


def _serve_rebuild(db: Path, site) -> None:
    """`stet serve` with no cached snapshot yet: it builds ARCHIVE-public from the archive."""
    from stet.serve import prepare

    prepare(db)
    assert db.with_name(db.name + "-public").exists()


#: Every command that does not write, as (name, argv after `stet` without --db). {doc},
#: {ann}, {at} and {out} are filled in from the fixture.
READ_COMMANDS = [
    ("documents", ["documents"]),
    ("documents --json", ["documents", "--json"]),
    ("show", ["show", "{doc}"]),
    ("show --json", ["show", "{doc}", "--json"]),
    ("text", ["text", "{doc}"]),
    ("log", ["log"]),
    ("log --json", ["log", "--json"]),
    ("log --head", ["log", "--head"]),
    ("log --head --json", ["log", "--head", "--json"]),
    ("log DOC", ["log", "{doc}"]),
    ("verify", ["verify"]),
    ("verify --json", ["verify", "--json"]),
    ("layer list", ["layer", "list"]),
    ("user list", ["user", "list"]),
    ("token list", ["token", "list"]),
    ("annotations", ["annotations"]),
    ("annotations DOC --json", ["annotations", "{doc}", "--json"]),
    ("annotations --at", ["annotations", "--at", "{at}"]),
    ("history", ["history", "{ann}"]),
    ("history --json", ["history", "{ann}", "--json"]),
    ("export", ["export", "--format", "w3c", "-o", "{out}/export.json"]),
    ("export --history", ["export", "--history", "--format", "jsonl", "-o", "{out}/h.jsonl"]),
    ("prov", ["prov", "{doc}"]),
    ("prov -o", ["prov", "{doc}", "-o", "{out}/prov.json"]),
    ("bag export", ["bag", "export", "{out}/bag"]),
    ("serve (snapshot current)", _serve_prepare),
    ("serve (snapshot rebuilt)", _serve_rebuild),
]

#: What serve keeps beside the archive, by design: its public snapshot cache.
SERVE_CACHE = {"archive.db-public"}


@pytest.mark.parametrize("which", ["snapshot", "live"])
@pytest.mark.parametrize("name,command", READ_COMMANDS, ids=[n for n, _ in READ_COMMANDS])
def test_read_commands_leave_the_archive_byte_identical(site, which, name, command):
    db = site[which]
    folder = db.parent
    before_hash = _sha256(db)
    before_files = sorted(p.name for p in folder.iterdir())
    assert before_files == ["archive.db"]  # quiescent: no -wal, no -shm, no -journal
    if callable(command):
        command(db, site)
    else:
        argv = [a.format(doc=site["doc"], ann=site["ann"], at=site["at"], out=site["out"])
                for a in command]
        result = _run(*argv, "--db", db)
        assert result.exit_code == 0, result.output
    assert _sha256(db) == before_hash, f"{name} changed the {which} archive"
    after_files = sorted(p.name for p in folder.iterdir() if p.name not in SERVE_CACHE)
    assert after_files == before_files, f"{name} left files beside the {which} archive"


def test_a_snapshot_keeps_the_hash_its_publish_event_recorded(site):
    """The point of it all: after reading, the snapshot still has the SHA-256 that the
    archive's publish event recorded."""
    for argv in (["layer", "list"], ["annotations"], ["history", site["ann"]], ["prov", site["doc"]],
                 ["verify"]):
        assert _run(*argv, "--db", site["snapshot"]).exit_code == 0
    with Archive(site["live"], readonly=True) as archive:
        recorded = [e for e in archive.log() if e["action"] == "publish"][-1]["details"]["sha256"]
    assert _sha256(site["snapshot"]) == recorded


def test_a_read_sees_what_a_writer_committed_while_the_archive_is_open(site):
    """Read-only is not immutable: with a writer holding the live archive open (its -wal
    and -shm present), a read command sees each commit."""
    writer = Archive(site["live"])
    try:
        writer.add_layer("fact-check", by="ana")
        result = _run("layer", "list", "--json", "--db", site["live"])
        assert result.exit_code == 0, result.output
        assert "fact-check" in result.output
        with Archive(site["live"], readonly=True) as reader:
            writer.add_layer("entities", by="ana")
            assert "entities" in [layer["name"] for layer in reader.layers()]
    finally:
        writer.close()


def test_a_read_only_archive_refuses_to_write(site):
    with Archive(site["live"], readonly=True) as archive:
        with pytest.raises(sqlite3.OperationalError):
            archive.add_layer("never", by="ana")
    _quiesce(site["live"])
    with Archive(site["live"], readonly=True) as archive:
        assert "never" not in [layer["name"] for layer in archive.layers()]


# -- stet log --head ----------------------------------------------------------------------------

def _head(db) -> dict:
    result = _run("log", "--head", "--json", "--db", db)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_log_head_json_is_exactly_length_and_head(site):
    with Archive(site["live"], readonly=True) as archive:
        events = list(archive.log())
    result = _run("log", "--head", "--json", "--db", site["live"])
    assert result.exit_code == 0, result.output
    assert result.output == json.dumps({"length": len(events), "head": events[-1]["hash"]}) + "\n"
    assert list(json.loads(result.output)) == ["length", "head"]
    plain = _run("log", "--head", "--db", site["live"])
    assert plain.output == f"{len(events)}:{events[-1]['hash']}\n"


def test_log_head_of_an_empty_archive(tmp_path):
    db = tmp_path / "archive.db"
    Archive(db).close()
    assert _head(db) == {"length": 0, "head": "0" * 64}
    with Archive(db, readonly=True) as archive:
        assert archive.head() == {"length": 0, "head": "0" * 64}


def test_log_head_takes_no_document(site):
    result = _run("log", site["doc"], "--head", "--db", site["live"])
    assert result.exit_code == 2


# -- stet verify --expect-head ------------------------------------------------------------------

def test_verify_expect_head_holds(site):
    head = _head(site["live"])
    result = _run("verify", "--expect-head", f"{head['length']}:{head['head']}", "--db",
                  site["live"])
    assert result.exit_code == 0, result.output
    # an earlier head is held too: the chain has it at that length
    with Archive(site["live"], readonly=True) as archive:
        first = next(archive.log())
    result = _run("verify", "--expect-head", f"1:{first['hash']}", "--db", site["live"])
    assert result.exit_code == 0, result.output


def test_verify_expect_head_with_a_wrong_hash(site):
    head = _head(site["live"])
    wrong = ("0" if head["head"][0] != "0" else "1") + head["head"][1:]
    result = _run("verify", "--expect-head", f"{head['length']}:{wrong}", "--db", site["live"])
    assert result.exit_code == 1, result.output
    assert "head" in result.output.lower() and str(head["length"]) in result.output


def test_verify_expect_head_beyond_the_chain(site):
    """A chain cut short: the head kept elsewhere is at a length the archive no longer has."""
    head = _head(site["live"])
    longer = head["length"] + 3
    result = _run("verify", "--expect-head", f"{longer}:{head['head']}", "--db", site["live"])
    assert result.exit_code == 1, result.output
    assert "head" in result.output.lower() and str(longer) in result.output


@pytest.mark.parametrize("value", ["", "12", "x:" + "a" * 64, "3:" + "a" * 63, "3:" + "g" * 64,
                                   "-1:" + "a" * 64, "3:" + "a" * 65, ":" + "a" * 64])
def test_verify_expect_head_malformed_is_a_usage_error(site, value):
    result = _run("verify", "--expect-head", value, "--db", site["live"])
    assert result.exit_code == 2, result.output
    assert "--expect-head" in result.output


# -- the schema's own record --------------------------------------------------------------------

def test_deleting_a_migration_row_is_refused(site):
    conn = sqlite3.connect(site["live"])
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM _sqlite_migrations")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE _sqlite_migrations SET name = 'forged'")
    finally:
        conn.close()


def test_ordinary_reads_refuse_an_archive_that_needs_migrating(site):
    db = site["live"]
    _drop_migration_rows(db)
    before = _sha256(db)
    result = _run("documents", "--db", db)
    assert result.exit_code == 1
    assert "needs migrating" in result.output
    assert _sha256(db) == before


def _drop_a_trigger(db: Path) -> str:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER documents_no_update")
    conn.close()
    return "documents_no_update"


def _drop_migration_rows(db: Path) -> str:
    """Rows deleted from _sqlite_migrations (its append-only triggers dropped first)."""
    conn = sqlite3.connect(db, isolation_level=None)
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '_sqlite_migrations'")]
    assert names  # the table is protected
    for name in names:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = (SELECT max(name) FROM _sqlite_migrations)")
    conn.close()
    return "_sqlite_migrations"


@pytest.mark.parametrize("damage", [_drop_migration_rows, _drop_a_trigger],
                         ids=["migration rows deleted", "trigger dropped"])
def test_verify_reports_a_damaged_schema_instead_of_refusing(site, damage):
    """verify still runs on a damaged schema, names the damage as a problem (exit 1), and
    reads without writing."""
    db = site["live"]
    named = damage(db)
    before = _sha256(db)
    result = _run("verify", "--db", db)
    assert result.exit_code == 1, result.output
    assert "needs migrating" not in result.output
    assert named in result.output
    assert _sha256(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["archive.db"]


def test_opening_a_reader_keeps_the_locks_of_connections_already_open(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it. A
    reader that peeked at the file with open() and close() let another process, closing
    the last connection it knew of, checkpoint and delete the log under a connection of
    this process still using it (stale reads, then "database disk image is malformed").
    Now: a connection held here keeps the -wal alive across another process's writes, and
    sees them."""
    import subprocess
    import sys

    from stet import store

    (tmp_path / "a.txt").write_text("Everyone has the right to life.\n", encoding="utf-8")
    path = tmp_path / "archive.db"
    with Archive(path) as archive:
        archive.ingest([tmp_path / "a.txt"], by="x")
    held = Archive(path)  # a connection this process keeps open (a server's, say)
    try:
        assert held.counts()["annotation revisions"] == 0
        store.connect(str(path), mode="read").conn.close()  # another reader comes and goes
        write = ("import sys; from stet import Archive\n"
                 "with Archive(sys.argv[1]) as a:\n"
                 "    a.annotate(1, layer='l', quote='right', body='b', by='y')\n")
        subprocess.run([sys.executable, "-c", write, str(path)], check=True)
        # the other process was not the last connection: it left the log for ours
        assert (tmp_path / "archive.db-wal").exists()
        assert held.counts()["annotation revisions"] == 1
        assert held.verify() == []
    finally:
        held.close()
