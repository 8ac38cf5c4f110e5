"""Public read replicas (issue 15, part 3): `stet publish s3://BUCKET/PREFIX/public/` uploads
the public snapshot and latest.json naming it; `stet serve --from` on any machine downloads the
newest, checks it (SHA-256, size, stet verify), serves it read-only and follows new ones. Two
replicas answer the same pages; nothing under the public prefix holds a restricted byte or
names the private store; a snapshot that fails a check is refused and the old one stays served.
Against a real S3 server (SeaweedFS, the ``s3`` fixture). No sleeping for timing: checks are
driven directly, or a condition is awaited with a deadline."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from stet import Archive
from stet.blobs.s3 import Bucket, StoreError
from stet.cli import cli
from stet.publish import public_details, publish
from stet.remote import KEEP, RemoteSite, check_snapshot, read_pointer

from test_serve_live import _get

PUBLIC = "Everyone has the right to freedom of opinion and expression.\n"
SECRET = "Quillon Zephyrine-7731 named the officers in private.\n"
MARKER = "Zephyrine-7731"
SECOND = "Article 20: everyone has the right to freedom of peaceful assembly.\n"
NEW = "Quillwort annotation, added later"

DOCUMENTS = "/archive/documents.json?_shape=array"
ANNOTATIONS = "/archive/annotations.json?_shape=array"


def _write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path, s3):
    """An archive whose raw bytes live in the store (``s3.url``): a public document, annotated,
    and a restricted one; its public prefix is ``s3.url/public``, in the same bucket."""
    files = tmp_path / "files"
    files.mkdir()
    db = tmp_path / "archive.db"
    with Archive(db) as archive:
        archive.set_store(s3.url, by="ana")
        pub = archive.ingest([_write(files, "public.txt", PUBLIC)], by="ana",
                             source="press office")[0]
        sec = archive.ingest([_write(files, "secret.txt", SECRET)], by="ana", restricted=True)[0]
        archive.annotate(pub["id"], layer="claims", body="a claim", by="ana", quote="freedom")
        assert archive.store()["in_stores"]["blobs"] == 2 and archive.store()["in_file"]["blobs"] == 0
    return {"db": db, "files": files, "public": pub["id"], "secret": sec["id"], "tmp": tmp_path,
            "url": f"{s3.url}/public/", "prefix": "archive/public/", "s3": s3}


def _stet(site, *args):
    return CliRunner().invoke(cli, [*map(str, args), "--db", str(site["db"])],
                              catch_exceptions=False)


def _annotate(site, body=NEW):
    with Archive(site["db"]) as archive:
        archive.annotate(site["public"], layer="claims", body=body, by="ana", quote="expression")


def _objects(site) -> dict[str, bytes]:
    """Every object under the public prefix: key -> bytes."""
    s3 = site["s3"]
    client = s3.client()
    return {key: client.get_object(Bucket=s3.name, Key=key)["Body"].read()
            for key in s3.keys(s3.name, site["prefix"])}


def assert_public_prefix_is_clean(site):
    """No restricted byte, and no name of the private store or of a private path, in any
    object under the public prefix."""
    objects = _objects(site)
    assert objects
    s3 = site["s3"]
    for key, data in objects.items():
        for private in (MARKER, s3.name, s3.url, "archive/packs", "archive/objects",
                        str(site["tmp"]), str(site["db"])):
            assert private.encode() not in data, (key, private)


def _until(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- publishing ---------------------------------------------------------------------------------


def test_publish_uploads_the_snapshot_then_the_pointer(site):
    result = _stet(site, "publish", site["url"], "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    s3 = site["s3"]
    keys = s3.keys(s3.name, site["prefix"])
    name = summary["snapshot"]
    assert set(keys) == {site["prefix"] + "latest.json", site["prefix"] + name}
    pointer = json.loads(_objects(site)[site["prefix"] + "latest.json"])
    assert pointer == summary["pointer"]
    assert set(pointer) == {"format", "snapshot", "sha256", "size", "head", "source_head",
                            "published"}
    data = _objects(site)[site["prefix"] + name]
    assert pointer["sha256"] == hashlib.sha256(data).hexdigest() and pointer["size"] == len(data)
    # named by the archive's chain head the snapshot holds; the archive recorded a publish
    # event after it, naming the location (the archive is private: it may)
    with Archive(site["db"], readonly=True) as archive:
        events = list(archive.log())
        event = events[-1]
        assert event["action"] == "publish" and event["details"]["url"] == summary["url"]
        held = events[-2]
    assert name == f"snapshots/{held['seq']}-{held['hash']}.db"
    assert pointer["source_head"] == {"length": held["seq"], "hash": held["hash"]}
    # the snapshot is the one `stet serve` keeps beside the archive, and it verifies
    local = site["db"].with_name("archive.db-public") / f"{held['seq']}-{held['hash'][:16]}-v4.db"
    assert local.read_bytes() == data
    with Archive(local, readonly=True) as snapshot:
        assert snapshot.verify() == []
        assert snapshot.conn.execute("SELECT count(*) FROM blob_objects").fetchone()[0] == 0
        assert [r[0] for r in snapshot.conn.execute("SELECT id FROM documents")] == [site["public"]]
    assert_public_prefix_is_clean(site)


def test_nothing_new_uploads_nothing_and_full_uploads_anyway(site):
    first = json.loads(_stet(site, "publish", site["url"], "--json").output)
    with Archive(site["db"], readonly=True) as archive:
        head = archive.head()
    again = _stet(site, "publish", site["url"])
    assert again.exit_code == 0 and "unchanged" in again.output and "nothing uploaded" in again.output
    with Archive(site["db"], readonly=True) as archive:  # no event for nothing published
        assert archive.head() == head
    s3 = site["s3"]
    assert len(s3.keys(s3.name, site["prefix"] + "snapshots/")) == 1
    full = json.loads(_stet(site, "publish", site["url"], "--full", "--json").output)
    assert full["build"] == "full" and full["snapshot"] != first["snapshot"]
    assert read_pointer(Bucket(site["url"]))["snapshot"] == full["snapshot"]
    assert_public_prefix_is_clean(site)


def test_only_the_newest_snapshots_are_kept(site):
    names = []
    for n in range(KEEP + 2):
        _annotate(site, f"note {n}")
        summary = json.loads(_stet(site, "publish", site["url"], "--json").output)
        assert summary["build"] in ("incremental", "full")
        names.append(summary["snapshot"])
    s3 = site["s3"]
    kept = {k[len(site["prefix"]):] for k in s3.keys(s3.name, site["prefix"] + "snapshots/")}
    assert kept == set(names[-KEEP:])
    assert read_pointer(Bucket(site["url"]))["snapshot"] == names[-1]


def test_another_archives_prefix_needs_force(site, tmp_path):
    assert _stet(site, "publish", site["url"]).exit_code == 0
    other = tmp_path / "other.db"
    with Archive(other) as archive:
        archive.ingest([_write(site["files"], "other.txt", "another archive\n")], by="omid")
    runner = CliRunner()
    refused = runner.invoke(cli, ["publish", site["url"], "--db", str(other)])
    assert refused.exit_code == 1 and "--force" in refused.output
    assert "not this one's" in refused.output
    forced = runner.invoke(cli, ["publish", site["url"], "--force", "--db", str(other)])
    assert forced.exit_code == 0, forced.output


def test_the_store_itself_is_never_a_public_location(site):
    for url in (site["s3"].url, f"s3://{site['s3'].name}/"):
        result = _stet(site, "publish", url)
        assert result.exit_code == 1 and "holds the archive's object store" in result.output
    for part in ("objects", "packs/public", "catalog/x"):  # where gc and Litestream look
        result = _stet(site, "publish", f"{site['s3'].url}/{part}/")
        assert result.exit_code == 1 and "keeps for itself" in result.output
    assert site["s3"].keys(site["s3"].name, "archive/latest.json") == {}


def test_public_details_never_name_the_store():
    details = {"sha256": "ab" * 32, "path": "/home/ana/transfer/a.txt", "name": "a.txt",
               "store": "s3://private-bucket/archive",
               "object": {"key": "archive/packs/ab/abab", "offset": 0, "length": 3}}
    shown = public_details(details)
    assert "store" not in shown and "object" not in shown and shown["path"] == "a.txt"
    carried = public_details({"original": {"events": [{"details": details}]}})
    assert "private-bucket" not in json.dumps(carried)


def test_a_store_backed_snapshot_holds_the_bytes_and_updates_like_a_full_build(site):
    """The raw bytes are in the store: a snapshot holds them inline (blob_chunks), and an
    update gives the rows a full build gives, ids included."""
    out = site["tmp"] / "site.db"
    assert publish(site["db"], out)["build"] == "full"
    with Archive(site["db"]) as archive:
        archive.ingest([_write(site["files"], "second.txt", SECOND)], by="ana")
        archive.ingest([_write(site["files"], "empty.bin", "")], by="ana")  # no bytes at all
        big = site["files"] / "large.bin"
        big.write_bytes(os.urandom(2 * (1 << 20) + 5))  # three chunks, the last short
        archive.ingest([big], by="ana")
    updated = publish(site["db"], out)
    assert updated["build"] == "incremental", updated.get("reason")
    full = site["tmp"] / "full.db"
    publish(site["db"], full, full=True)
    rows = {}
    for path in (out, full):
        conn = sqlite3.connect(path)
        try:
            rows[path] = [conn.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid").fetchall()
                          for t in ("blobs", "blob_chunks", "blob_objects")]
        finally:
            conn.close()
        with Archive(path, readonly=True) as snapshot:
            assert snapshot.verify() == []
            raw = b"".join(row[0] for row in snapshot.conn.execute(
                "SELECT data FROM blob_chunks c JOIN documents d ON d.sha256 = c.sha256 "
                "WHERE d.filename = 'large.bin' ORDER BY seq"))
            assert raw == big.read_bytes()
        data = path.read_bytes()
        assert site["s3"].name.encode() not in data and MARKER.encode() not in data
    assert rows[out] == rows[full]
    blobs, chunks, objects = rows[full]
    assert objects == [] and len(blobs) == 4 and all(c[0] < 0 for c in chunks)
    # the texts' bytes are kept once, as their texts (as an archive without a store keeps
    # them); only the large file's are chunks
    assert sorted(len(c[4]) for c in chunks) == [5, 1 << 20, 1 << 20]
    assert sorted(row[3] for row in blobs) == ["chunks", "text", "text", "text"]


# -- replicas -----------------------------------------------------------------------------------


def _replica(site, port, cache, *, check_every="1"):
    stet = pathlib.Path(sys.executable).with_name("stet")
    log = open(cache.with_suffix(".log"), "w")
    try:
        return subprocess.Popen(
            [str(stet), "serve", "--from", site["url"], "--port", str(port), "--cache", str(cache),
             "--check-every", check_every],
            cwd=site["tmp"], stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def _answer(base, path):
    try:
        return httpx.get(base + path, timeout=10)
    except httpx.HTTPError:
        return None


@pytest.mark.slow
def test_two_replicas_answer_the_same_pages_and_follow(site):
    assert _stet(site, "publish", site["url"]).exit_code == 0
    ports = [_free_port(), _free_port()]
    caches = [site["tmp"] / "replica-a", site["tmp"] / "replica-b"]
    servers = [_replica(site, port, cache) for port, cache in zip(ports, caches)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for server, base in zip(servers, bases):
            _until(lambda server=server, base=base: server.poll() is not None
                   or _answer(base, "/-/documents/1") is not None)
            assert server.poll() is None, pathlib.Path(caches[0]).with_suffix(".log").read_text()
        pages = [[_answer(base, path) for path in (DOCUMENTS, "/-/documents/1", ANNOTATIONS,
                                                    "/-/documents/1/raw")]
                 for base in bases]
        for answers in pages:
            assert [a.status_code for a in answers] == [200, 200, 200, 200]
        a, b = pages
        assert a[0].json() == b[0].json() and a[1].text == b[1].text and a[2].json() == b[2].json()
        assert [d["id"] for d in a[0].json()] == [site["public"]]
        assert a[3].content == b[3].content == PUBLIC.encode()  # bytes from the store, inline
        for base in bases:  # the restricted document is nowhere
            assert _answer(base, f"/-/documents/{site['secret']}").status_code == 404
            assert MARKER not in _answer(base, "/-/search?q=Zephyrine").text
            assert _answer(base, "/archive/documents").status_code == 200
        # a new annotation, published: both replicas follow (every second)
        _annotate(site)
        assert NEW not in _answer(bases[0], "/-/documents/1").text
        assert _stet(site, "publish", site["url"]).exit_code == 0
        published = time.monotonic()
        for base in bases:
            _until(lambda base=base: NEW in _answer(base, "/-/documents/1").text)
        followed = time.monotonic() - published
        print(f"both replicas served the new snapshot {followed:.2f} s after stet publish")
        a, b = ([_answer(base, path) for path in (DOCUMENTS, "/-/documents/1", ANNOTATIONS)]
                for base in bases)
        assert a[0].json() == b[0].json() and a[1].text == b[1].text and a[2].json() == b[2].json()
        assert sorted(r["body"] for r in a[2].json()) == sorted(["a claim", NEW])
        # SIGHUP looks at once; the replicas go on serving
        servers[0].send_signal(signal.SIGHUP)
        assert _answer(bases[0], "/-/documents/1").status_code == 200
        for cache in caches:  # the first snapshot went from each cache with its last request
            _until(lambda cache=cache: len(list(cache.glob("*.db"))) == 1)
        for server in servers:
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=30) == 0
        for cache in caches:
            log = cache.with_suffix(".log").read_text()
            assert "now serving" in log and "Traceback" not in log
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert_public_prefix_is_clean(site)


@pytest.fixture
def replica(site):
    """A replica in this process (RemoteSite), checking only when told."""
    assert _stet(site, "publish", site["url"]).exit_code == 0
    logged: list[str] = []
    replica = RemoteSite(site["url"], cache=site["tmp"] / "cache", check_every=0,
                         log=logged.append)
    replica.logged = logged
    yield replica
    replica.close()


def _point(site, name, data, pointer=None):
    """Upload ``data`` under ``name`` and a latest.json naming it with its SHA-256 and size
    (``pointer``: the rest, by default the current one's heads)."""
    bucket = Bucket(site["url"])
    current = read_pointer(bucket)
    bucket.put_bytes(name, data)
    pointer = {**current, "snapshot": name, "sha256": hashlib.sha256(data).hexdigest(),
               "size": len(data), **(pointer or {})}
    bucket.put_bytes("latest.json", json.dumps(pointer).encode())
    return pointer


def test_a_replica_refuses_what_fails_a_check_and_keeps_serving(site, replica):
    served = replica.current()
    page, = _get(replica, "/-/documents/1")
    assert page.status_code == 200 and "a claim" in page.text
    good = read_pointer(Bucket(site["url"]))
    snapshot = _objects(site)[site["prefix"] + good["snapshot"]]

    def refused(why):
        assert replica.check() is False and replica.current() is served
        assert len(replica.logged) == count + 1  # one line
        assert why in replica.logged[-1] and "still serving" in replica.logged[-1]
        assert _get(replica, "/-/documents/1")[0].text == page.text
        assert replica.check() is False and len(replica.logged) == count + 1  # not again at once
        assert not [p for p in replica.cache.iterdir() if p.name.startswith(".")]  # no leftover

    # garbage, with its own SHA-256 and size in latest.json
    count = len(replica.logged)
    _point(site, "snapshots/99-" + "ab" * 32 + ".db", os.urandom(40000))
    refused("fails stet verify")
    # the real snapshot, but latest.json gives another SHA-256
    count = len(replica.logged)
    bucket = Bucket(site["url"])
    bucket.put_bytes("latest.json", json.dumps({**good, "sha256": "cd" * 32}).encode())
    refused("is not the file latest.json names")
    # a snapshot whose bytes were altered (a text and its raw bytes): stet verify fails
    count = len(replica.logged)
    altered = snapshot.replace(b"freedom of opinion", b"freedom of OPINION")
    assert altered != snapshot
    _point(site, "snapshots/98-" + "cd" * 32 + ".db", altered)
    refused("fails stet verify")
    # the real snapshot, but latest.json says it holds another state of the archive
    count = len(replica.logged)
    _point(site, good["snapshot"], snapshot, {"source_head": {"length": 1, "hash": "ef" * 32}})
    refused("it holds the archive at")
    # (or that its own chain ends elsewhere)
    assert check_snapshot(served.path, {**good, "head": {"length": 1, "hash": "ef" * 32}}) \
        == ["its chain ends at event 4 (" + good["head"]["hash"][:12] + "), not at event 1 "
            "(efefefefefef) as latest.json says"]
    assert check_snapshot(served.path, good) == []
    # SIGHUP retries at once; a good publication is served
    assert replica.check(retry=True) is False and len(replica.logged) == count + 2
    _annotate(site)
    refusal = _stet(site, "publish", site["url"])  # latest.json names a head not in the chain
    assert refusal.exit_code == 1 and "--force" in refusal.output
    bucket.put_bytes("latest.json", json.dumps(good).encode())
    assert _stet(site, "publish", site["url"]).exit_code == 0
    assert replica.check() is True
    assert NEW in _get(replica, "/-/documents/1")[0].text
    assert "now serving" in replica.logged[-1]
    assert sorted(p.name for p in replica.cache.iterdir()) == [replica.current().path.name]


def test_a_replica_keeps_serving_while_the_store_is_unreachable(site, replica, monkeypatch):
    served = replica.current()
    calls = []

    def unreachable(name, limit=0):
        calls.append(name)
        raise StoreError(f"object store {site['url']}{name}: Could not connect to the endpoint")

    monkeypatch.setattr(replica.bucket, "get_bytes", unreachable)
    replica.check_every = 0.02
    replica.start()
    _until(lambda: len(calls) >= 5)
    assert replica.current() is served
    assert _get(replica, "/-/documents/1")[0].status_code == 200
    cannot = [line for line in replica.logged if "could not read" in line]
    assert len(cannot) == 1 and "latest.json" in cannot[0] and "still serving" in cannot[0]
    monkeypatch.undo()
    _until(lambda: any("can be read again" in line for line in replica.logged))
    _annotate(site)
    assert _stet(site, "publish", site["url"]).exit_code == 0
    _until(lambda: replica.current() is not served)
    assert NEW in _get(replica, "/-/documents/1")[0].text


def test_a_replica_reuses_what_its_cache_holds(site, replica):
    path = replica.current().path
    logged = []
    second = RemoteSite(site["url"], cache=replica.cache, check_every=0, log=logged.append)
    try:
        assert second.current().path == path
        assert _get(second, DOCUMENTS)[0].json() == _get(replica, DOCUMENTS)[0].json()
    finally:
        second.close()
    assert path.exists()  # the first replica still holds it


def test_serve_from_the_command_line(site, s3):
    runner = CliRunner()
    empty = runner.invoke(cli, ["serve", "--from", f"s3://{s3.name}/nothing/here/",
                                "--cache", str(site["tmp"] / "c")])
    assert empty.exit_code == 1
    assert empty.output.startswith("Error: no public snapshot at s3://")
    assert "latest.json" in empty.output and len(empty.output.strip().splitlines()) == 1
    both = runner.invoke(cli, ["serve", "--from", site["url"], "--db", str(site["db"])])
    assert both.exit_code == 2 and "--from and --db cannot be used together" in both.output
    cache = runner.invoke(cli, ["serve", "--cache", "x", "--db", str(site["db"])])
    assert cache.exit_code == 2 and "--cache goes with --from" in cache.output
    bad = runner.invoke(cli, ["serve", "--from", "https://example.org/public/"])
    assert bad.exit_code == 1 and "s3://BUCKET/PREFIX" in bad.output
