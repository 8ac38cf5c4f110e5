"""Public read replicas (issue 15, part 3): `stet publish s3://BUCKET/PREFIX/public/` uploads
the public snapshot in content-addressed parts (only those not there already), its manifest and
latest.json naming it; `stet serve --from` on any machine assembles the newest from its parts
(reusing those its cache holds), checks it (each part's SHA-256, the file's SHA-256 and size,
stet verify), serves it read-only and follows new ones. Two replicas answer the same pages;
nothing under the public prefix holds a restricted byte or names the private store; a snapshot
that fails a check is refused and the old one stays served.
Against a real S3 server (SeaweedFS, the ``s3`` fixture). No sleeping for timing: checks are
driven directly, or a condition is awaited with a deadline."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
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
from stet import remote
from stet.blobs.s3 import Bucket, ObjectStore, StoreError
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


def _manifests(site) -> dict[str, dict]:
    """Every snapshot's manifest under the public prefix: name (below it) -> manifest."""
    return {key[len(site["prefix"]):]: json.loads(data) for key, data in _objects(site).items()
            if key.startswith(site["prefix"] + "snapshots/") and key.endswith(".json")}


def _parts(site) -> set[str]:
    """The SHA-256 of every part under ``parts/``."""
    s3 = site["s3"]
    return {key.rsplit("/", 1)[1] for key in s3.keys(s3.name, site["prefix"] + "parts/")}


def _assemble(site, manifest) -> bytes:
    """The file a manifest describes, from its parts."""
    objects = _objects(site)
    return b"".join(objects[f"{site['prefix']}parts/{sha[:2]}/{sha}"] for sha in manifest["parts"])


def assert_public_prefix_is_clean(site):
    """No restricted byte, and no name of the private store or of a private path, in any
    object under the public prefix, nor in any snapshot its parts make (a word may straddle
    two parts)."""
    objects = _objects(site)
    assert objects
    s3 = site["s3"]
    wholes = {name: _assemble(site, manifest) for name, manifest in _manifests(site).items()}
    for key, data in [*objects.items(), *wholes.items()]:
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
    manifest = _manifests(site)[name]
    parts = {f"{site['prefix']}parts/{sha[:2]}/{sha}" for sha in manifest["parts"]}
    assert set(keys) == {site["prefix"] + "latest.json", site["prefix"] + name, *parts}
    pointer = json.loads(_objects(site)[site["prefix"] + "latest.json"])
    assert pointer == summary["pointer"] and pointer["format"] == 2
    assert set(pointer) == {"format", "snapshot", "sha256", "size", "head", "source_head",
                            "published"}
    assert set(manifest) == {"format", "size", "sha256", "part_size", "parts", "head",
                             "source_head", "published"}
    assert manifest["part_size"] == remote.formats.PART and manifest["format"] == 2
    assert {k: manifest[k] for k in pointer if k not in ("format", "snapshot")} \
        == {k: pointer[k] for k in pointer if k not in ("format", "snapshot")}
    data = _assemble(site, manifest)
    assert pointer["sha256"] == hashlib.sha256(data).hexdigest() and pointer["size"] == len(data)
    assert len(manifest["parts"]) == -(-len(data) // remote.formats.PART)
    assert all(hashlib.sha256(objects).hexdigest() == key.rsplit("/", 1)[1]
               for key, objects in _objects(site).items() if key in parts)
    assert summary["parts"]["total"] == len(manifest["parts"]) == summary["parts"]["uploaded"]
    # named by the archive's chain head the snapshot holds; the archive recorded a publish
    # event after it, naming the location (the archive is private: it may)
    with Archive(site["db"], readonly=True) as archive:
        events = list(archive.log())
        event = events[-1]
        assert event["action"] == "publish" and event["details"]["url"] == summary["url"]
        held = events[-2]
    assert name == f"snapshots/{held['seq']}-{held['hash']}.json"
    assert event["details"]["file"] == name
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
    names, deleted_parts = [], []
    for n in range(KEEP + 2):
        _annotate(site, f"note {n}")
        summary = json.loads(_stet(site, "publish", site["url"], "--json").output)
        assert summary["build"] in ("incremental", "full")
        names.append(summary["snapshot"])
        deleted_parts.append(summary["deleted_parts"])
    s3 = site["s3"]
    kept = {k[len(site["prefix"]):] for k in s3.keys(s3.name, site["prefix"] + "snapshots/")}
    assert kept == set(names[-KEEP:])
    assert read_pointer(Bucket(site["url"]))["snapshot"] == names[-1]
    # the parts are exactly those the kept manifests list: the others were deleted
    manifests = _manifests(site)
    assert set(manifests) == kept
    assert _parts(site) == {sha for manifest in manifests.values() for sha in manifest["parts"]}
    assert sum(deleted_parts) >= 2 and deleted_parts[:KEEP] == [0] * KEEP


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


def _point(site, stem, data, pointer=None, manifest=None):
    """Upload ``data`` in parts, a manifest ``STEM.json`` listing them and a latest.json
    naming it with its SHA-256 and size (``pointer``, ``manifest``: the rest, by default the
    current one's heads)."""
    bucket = Bucket(site["url"])
    objects = ObjectStore(bucket.location)
    current = read_pointer(bucket)
    parts = []
    for offset in range(0, len(data), remote.formats.PART):
        piece = data[offset:offset + remote.formats.PART]
        sha = hashlib.sha256(piece).hexdigest()
        objects.put_named(f"parts/{sha[:2]}/{sha}", sha, piece)
        parts.append(sha)
    name = stem + ".json"
    pointer = {**current, "snapshot": name, "sha256": hashlib.sha256(data).hexdigest(),
               "size": len(data), **(pointer or {})}
    manifest = {"format": 2, "part_size": remote.formats.PART, "parts": parts,
                **{k: pointer[k] for k in ("size", "sha256", "head", "source_head", "published")},
                **(manifest or {})}
    bucket.put_bytes(name, json.dumps(manifest).encode())
    bucket.put_bytes("latest.json", json.dumps(pointer).encode())
    return pointer


def test_a_replica_refuses_what_fails_a_check_and_keeps_serving(site, replica):
    served = replica.current()
    page, = _get(replica, "/-/documents/1")
    assert page.status_code == 200 and "a claim" in page.text
    good = read_pointer(Bucket(site["url"]))
    snapshot = _assemble(site, _manifests(site)[good["snapshot"]])
    assert snapshot == served.path.read_bytes()

    def refused(why):
        assert replica.check() is False and replica.current() is served
        assert len(replica.logged) == count + 1  # one line
        assert why in replica.logged[-1] and "still serving" in replica.logged[-1]
        assert _get(replica, "/-/documents/1")[0].text == page.text
        assert replica.check() is False and len(replica.logged) == count + 1  # not again at once
        assert not [p for p in replica.cache.iterdir() if p.name.startswith(".")]  # no leftover

    # garbage, with its own SHA-256 and size in latest.json
    count = len(replica.logged)
    _point(site, "snapshots/99-" + "ab" * 32, os.urandom(40000))
    refused("fails stet verify")
    # the real snapshot, but latest.json gives another SHA-256 than its manifest
    count = len(replica.logged)
    bucket = Bucket(site["url"])
    bucket.put_bytes("latest.json", json.dumps({**good, "sha256": "cd" * 32}).encode())
    refused("its 'sha256' is not the one latest.json gives")
    # ... or both do, and the parts make another file
    count = len(replica.logged)
    _point(site, "snapshots/97-" + "ab" * 32, snapshot, {"sha256": "ce" * 32})
    refused("does not make the file latest.json names")
    # a manifest that is not one: too few parts for its size, or not JSON, or none at all
    # (each pointer with a head of its own: one that failed is not tried again at once)
    def elsewhere(n):
        return {"source_head": {"length": n, "hash": "ef" * 32}}

    for n, (manifest, why) in enumerate((({"parts": []}, "'parts' is not a list"),
                                         ({"part_size": 0}, "'part_size' is not"),
                                         ({"format": 1}, "format 1, not 2"),
                                         ({"size": 5}, "its 'size' is not the one"))):
        count = len(replica.logged)
        _point(site, "snapshots/96-" + "ab" * 32, snapshot, elsewhere(50 + n), manifest)
        refused(why)
    count = len(replica.logged)
    bucket.put_bytes("snapshots/95-" + "ab" * 32 + ".json", b"{not json")
    bucket.put_bytes("latest.json", json.dumps(
        {**good, **elsewhere(60), "snapshot": "snapshots/95-" + "ab" * 32 + ".json"}).encode())
    refused("is not JSON")
    count = len(replica.logged)
    bucket.put_bytes("latest.json", json.dumps(
        {**good, **elsewhere(61), "snapshot": "snapshots/94-" + "ab" * 32 + ".json"}).encode())
    refused("is not there")
    # a snapshot whose bytes were altered (a text and its raw bytes): stet verify fails
    count = len(replica.logged)
    altered = snapshot.replace(b"freedom of opinion", b"freedom of OPINION")
    assert altered != snapshot
    _point(site, "snapshots/98-" + "cd" * 32, altered)
    refused("fails stet verify")
    # the real snapshot, but latest.json says it holds another state of the archive
    count = len(replica.logged)
    _point(site, "snapshots/93-" + "ab" * 32, snapshot,
           {"source_head": {"length": 1, "hash": "ef" * 32}})
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
    name = replica.current().path.name
    assert sorted(p.name for p in replica.cache.iterdir()) == [name, name[:-3] + ".json"]


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


def test_a_replica_starting_while_the_store_is_unreachable_serves_its_cache(site, replica,
                                                                              monkeypatch):
    """Restarted during an outage of the store, a replica serves the newest snapshot its
    cache holds (checked against its manifest) and says so; with an empty cache it cannot."""
    path = replica.current().path
    pages = _get(replica, DOCUMENTS)[0].json()
    replica.close()

    def unreachable(self, name, limit=0):
        raise StoreError(f"object store {site['url']}{name}: Could not connect to the endpoint")

    monkeypatch.setattr(Bucket, "get_bytes", unreachable)
    logged: list[str] = []
    again = RemoteSite(site["url"], cache=replica.cache, check_every=0, log=logged.append)
    try:
        assert again.current().path == path
        assert _get(again, DOCUMENTS)[0].json() == pages
        assert any("cannot be read" in line and "from the cache" in line for line in logged)
    finally:
        again.close()
    with pytest.raises(StoreError):
        RemoteSite(site["url"], cache=site["tmp"] / "empty", check_every=0, log=logged.append)


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


# -- parts --------------------------------------------------------------------------------------


@pytest.fixture
def large(site, monkeypatch):
    """The site with a public file of 1.5 MB (random: its bytes make most of the snapshot),
    published in parts of 64 KiB (the snapshot: some 25 parts), and a replica serving it."""
    monkeypatch.setattr(remote.formats, "PART", 64 << 10)
    big = site["files"] / "large.bin"
    big.write_bytes(os.urandom(3 * (1 << 19)))
    with Archive(site["db"]) as archive:
        archive.ingest([big], by="ana")
    first = json.loads(_stet(site, "publish", site["url"], "--json").output)
    assert first["parts"]["total"] >= 20 and first["parts"]["uploaded"] == first["parts"]["distinct"]
    logged: list[str] = []
    replica = RemoteSite(site["url"], cache=site["tmp"] / "cache", check_every=0,
                         log=logged.append)
    replica.logged = logged
    assert replica.last_parts["reused"] == 0
    assert replica.last_parts["downloaded"] == first["parts"]["total"]
    yield {**site, "first": first, "replica": replica}
    replica.close()


def test_a_new_annotation_sends_only_the_parts_that_changed(large):
    site, replica, first = large, large["replica"], large["first"]
    old = _manifests(site)[first["snapshot"]]
    _annotate(site)
    second = json.loads(_stet(site, "publish", site["url"], "--json").output)
    assert second["build"] == "incremental", second.get("reason")
    new = _manifests(site)[second["snapshot"]]
    total, uploaded = second["parts"]["total"], second["parts"]["uploaded"]
    print(f"second publication: {uploaded} of {total} parts uploaded")
    assert 0 < uploaded < total / 2
    assert uploaded == len(set(new["parts"]) - set(old["parts"]))
    assert second["parts"]["uploaded_bytes"] <= uploaded * remote.formats.PART
    # under parts/: exactly the parts the kept manifests list
    assert _parts(site) == set(old["parts"]) | set(new["parts"])
    # the replica follows, downloading only the parts it does not hold
    served = replica.current().path.read_bytes()
    assert replica.check() is True
    counts = replica.last_parts
    line = replica.logged[-2]
    assert f"{counts['reused']} reused from the cache, {counts['downloaded']} downloaded" in line
    assert counts["downloaded"] == sum(sha not in set(old["parts"]) for sha in new["parts"])
    assert counts["reused"] + counts["downloaded"] == total and counts["downloaded"] < total / 2
    assert replica.current().path.read_bytes() != served
    assert replica.current().path.read_bytes() == _assemble(site, new)
    # it serves what a replica downloading every part serves
    logged: list[str] = []
    fresh = RemoteSite(site["url"], cache=site["tmp"] / "fresh", check_every=0, log=logged.append)
    try:
        assert fresh.last_parts == {**fresh.last_parts, "reused": 0, "downloaded": total}
        for path in (DOCUMENTS, ANNOTATIONS, "/-/documents/1", "/-/documents/3/raw"):
            mine, theirs = _get(replica, path)[0], _get(fresh, path)[0]
            assert mine.status_code == 200 and mine.content == theirs.content, path
        assert NEW in _get(replica, "/-/documents/1")[0].text
    finally:
        fresh.close()
    # the cache holds the served snapshot and its manifest, nothing else
    name = replica.current().path.name
    assert sorted(p.name for p in replica.cache.iterdir()) == [name, name[:-3] + ".json"]
    assert_public_prefix_is_clean(site)


def test_a_tampered_part_is_refused_and_the_old_snapshot_stays(large):
    site, replica = large, large["replica"]
    served = replica.current()
    old = _manifests(site)[large["first"]["snapshot"]]
    _annotate(site)
    second = json.loads(_stet(site, "publish", site["url"], "--json").output)
    new = _manifests(site)[second["snapshot"]]
    changed = [sha for sha in new["parts"] if sha not in set(old["parts"])]
    key = f"parts/{changed[-1][:2]}/{changed[-1]}"
    bucket = Bucket(site["url"])
    genuine = bucket.get_bytes(key)
    bucket.put_bytes(key, os.urandom(len(genuine)))  # garbage under the part's key
    count = len(replica.logged)
    assert replica.check() is False and replica.current() is served
    assert len(replica.logged) == count + 1
    assert f"{key} is not the part {second['snapshot']} lists" in replica.logged[-1]
    assert "still serving" in replica.logged[-1]
    assert NEW not in _get(replica, "/-/documents/1")[0].text
    assert not [p for p in replica.cache.iterdir() if p.name.startswith(".")]  # no leftover
    # one too long is refused as it comes
    bucket.put_bytes(key, genuine + b"x")
    assert replica.check(retry=True) is False and "is larger than" in replica.logged[-1]
    # a cached manifest that lies about the snapshot beside it only costs downloads
    beside = served.path.with_suffix(".json")
    lying = json.loads(beside.read_bytes())
    lying["parts"] = lying["parts"][1:] + lying["parts"][:1]
    beside.write_text(json.dumps(lying))
    bucket.put_bytes(key, genuine)
    assert replica.check(retry=True) is True
    assert NEW in _get(replica, "/-/documents/1")[0].text
    assert replica.current().path.read_bytes() == _assemble(site, new)
    assert replica.last_parts["downloaded"] > len(changed)


def test_a_full_build_sends_what_differs_and_retention_deletes_the_unlisted(large):
    site = large
    first = large["first"]
    old = _manifests(site)[first["snapshot"]]
    _annotate(site)
    full = json.loads(_stet(site, "publish", site["url"], "--full", "--json").output)
    assert full["build"] == "full"
    new = _manifests(site)[full["snapshot"]]
    assert full["parts"]["uploaded"] == len(set(new["parts"]) - set(old["parts"])) > 0
    names, deleted = [first["snapshot"], full["snapshot"]], 0
    for n in range(KEEP):
        _annotate(site, f"note {n}")
        summary = json.loads(_stet(site, "publish", site["url"], "--json").output)
        names.append(summary["snapshot"])
        deleted += summary["deleted_parts"]
    manifests = _manifests(site)
    assert set(manifests) == set(names[-KEEP:])
    assert _parts(site) == {sha for manifest in manifests.values() for sha in manifest["parts"]}
    assert deleted > 0
    assert_public_prefix_is_clean(site)


def test_a_pointer_of_an_earlier_stet_is_replaced(site):
    """latest.json of pointer format 1 (a whole file, snapshots/LENGTH-HEAD.db): publishing
    replaces it, even with nothing new in the archive (a replica of this version cannot read
    it); the old file goes like an old snapshot."""
    with Archive(site["db"], readonly=True) as archive:
        length, head = archive.head().values()
    bucket = Bucket(site["url"])
    old = f"snapshots/{length}-{head}.db"
    bucket.put_bytes(old, b"an old whole snapshot")
    bucket.put_bytes("latest.json", json.dumps({
        "format": 1, "snapshot": old, "sha256": "ab" * 32, "size": 21,
        "head": {"length": 3, "hash": "cd" * 32}, "source_head": {"length": length, "hash": head},
        "published": "2026-01-01T00:00:00.000000Z"}).encode())
    logged: list[str] = []
    with pytest.raises(Exception, match="format 1, not 2"):
        RemoteSite(site["url"], cache=site["tmp"] / "cache", check_every=0, log=logged.append)
    summary = json.loads(_stet(site, "publish", site["url"], "--json").output)
    assert summary["uploaded"] and read_pointer(bucket)["format"] == 2
    deleted = []
    for n in range(KEEP):
        _annotate(site, f"note {n}")
        deleted += json.loads(_stet(site, "publish", site["url"], "--json").output)["deleted"]
    assert old in deleted and not Bucket(site["url"]).get_bytes(old)


def test_publish_says_how_many_parts_it_sent(site):
    first = _stet(site, "publish", site["url"])
    assert first.exit_code == 0, first.output
    sent = re.search(r"^sent (\d+) of its (\d+) parts \((\d+) bytes\); the store had the others$",
                     first.output, re.M)
    assert sent and sent[1] == sent[2]  # nothing there yet: every part sent
    assert re.search(r"/latest\.json names it now", first.output)
    _annotate(site)
    again = _stet(site, "publish", site["url"])
    sent = re.search(r"^sent (\d+) of its (\d+) parts", again.output, re.M)
    assert sent and int(sent[1]) <= int(sent[2])
