"""Serve what is new (issue 14): `stet serve` follows the archive. A check finds the chain
grown, a new snapshot is built beside the served one and swapped in atomically; a request
begun on the old snapshot ends on it, the old file goes after its last request, a failed build
leaves the old one served, and SIGHUP checks at once. No sleeping for timing: checks and
refreshes are driven directly, or a condition is awaited with a deadline."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

import stet.serve
from stet import Archive
from stet.cli import cli
from stet.errors import StetError
from stet.serve import LiveSite
from stet.snapshots import snapshot_folder

TEXT = "Everyone has the right to life.\n"
NEW = "Quillwort annotation, added later"
SECRET = "Everyone has the right"


@pytest.fixture
def archive_path(tmp_path):
    doc = tmp_path / "a.txt"
    doc.write_text(TEXT, encoding="utf-8")
    path = tmp_path / "archive.db"
    with Archive(path) as archive:
        archive.ingest([doc], by="ana")
        archive.annotate(1, layer="claims", body="a claim", by="ana", quote="right to life")
    return path


@pytest.fixture
def site(archive_path):
    logged: list[str] = []
    site = LiveSite(archive_path, check_every=0, log=logged.append)
    site.logged = logged
    yield site
    site.close()


def _annotate(archive_path, body=NEW):
    with Archive(archive_path) as archive:
        archive.annotate(1, layer="claims", body=body, by="ana", quote="life")


def _get(app, *urls):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(url) for url in urls]

    return asyncio.run(go())


ANNOTATIONS = "/archive/annotations.json?_shape=array"
DOCUMENTS = "/archive/documents.json?_shape=array"


def _snapshots(archive_path):
    return sorted(p.name for p in snapshot_folder(archive_path).iterdir())


def test_a_new_annotation_is_public_after_a_check(site, archive_path):
    page, rows = _get(site, "/-/documents/1", ANNOTATIONS)
    assert page.status_code == 200 and NEW not in page.text and len(rows.json()) == 1
    old = site.current().path
    assert not site.changed() and site.check() is False  # nothing new: nothing built
    _annotate(archive_path)
    assert site.changed()
    page, = _get(site, "/-/documents/1")  # until the check, the snapshot served is the old one
    assert NEW not in page.text
    assert site.check() is True
    assert site.current().path != old and not site.changed()
    page, rows = _get(site, "/-/documents/1", ANNOTATIONS)
    assert NEW in page.text and "2 annotations" in page.text
    assert sorted(r["body"] for r in rows.json()) == sorted(["a claim", NEW])
    # the old snapshot had no request in flight: let go and removed at once
    assert not old.exists() and _snapshots(archive_path) == [site.current().path.name]
    assert site.check() is False
    assert any("now serving" in line for line in site.logged)


def test_a_request_ends_on_the_snapshot_it_began_on(site, archive_path):
    """A slow download of /archive.db, paused after its first chunk while the snapshot is
    replaced: it ends with the old file's bytes, new requests get the new snapshot, and the old
    file goes only when the download has ended."""
    old = site.current().path
    old_bytes = old.read_bytes()
    assert len(old_bytes) > 3 * 4096  # Datasette sends it in 4 KiB chunks

    async def go():
        first_chunk, go_on = asyncio.Event(), asyncio.Event()
        messages = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            messages.append(message)
            if message["type"] == "http.response.body" and not first_chunk.is_set():
                first_chunk.set()
                await go_on.wait()  # the client reads slowly

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": "/archive.db",
                 "raw_path": b"/archive.db", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1),
                 "server": ("test", 80)}
        download = asyncio.create_task(site(scope, receive, send))
        await asyncio.wait_for(first_chunk.wait(), 30)
        assert site.current().in_flight == 1
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _annotate, archive_path)
        assert await loop.run_in_executor(None, site.check) is True  # swapped mid-download
        new = site.current()
        assert new.path != old and old.exists()  # still held: a request is on it
        transport = httpx.ASGITransport(app=site)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = await client.get("/-/documents/1")
            fresh = await client.get("/archive.db")
        assert NEW in page.text and NEW.encode() in fresh.content
        assert old.exists()
        go_on.set()
        await asyncio.wait_for(download, 30)
        return messages

    messages = asyncio.run(go())
    assert messages[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert body == old_bytes and NEW.encode() not in body
    assert not old.exists()  # let go and removed once its last request ended
    assert _snapshots(archive_path) == [site.current().path.name]


def test_the_dispatcher_counts_requests_per_snapshot(site, archive_path, monkeypatch):
    """With a fake app in place of a generation's: each request is given to the generation
    current when it begins; the old one is let go when its count reaches zero."""
    entered, leave = threading.Event(), threading.Event()
    released = []

    class Paused:
        def __init__(self, name):
            self.name = name

        async def __call__(self, scope, receive, send):
            if scope["path"] == "/slow":
                entered.set()
                while not leave.is_set():
                    await asyncio.sleep(0.01)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": self.name.encode()})

    first = site.current()
    first.app = Paused("first")
    real_release = stet.serve.Generation.release

    def release(generation):
        released.append(generation.number)
        real_release(generation)

    monkeypatch.setattr(stet.serve.Generation, "release", release)
    try:
        slow = threading.Thread(target=lambda: released.append(_get(site, "/slow")[0].text))
        slow.start()
        assert entered.wait(30)
        _annotate(archive_path)
        assert site.check() is True
        second = site.current()
        second.app = Paused("second")
        assert _get(site, "/fast")[0].text == "second"
        assert first.in_flight == 1 and released == [] and first.path.exists()
        leave.set()
        slow.join(30)
        # let go as the request ended, before its answer was read
        assert released == [first.number, "first"]
        assert first.in_flight == 0 and not first.path.exists()
    finally:
        leave.set()


def test_a_failing_build_keeps_the_old_snapshot_served(site, archive_path, monkeypatch):
    old = site.current()
    calls = []

    def broken(source, cache=None):
        calls.append(source)
        raise StetError("disk full")

    monkeypatch.setattr(stet.serve, "open_snapshot", broken)
    _annotate(archive_path)
    assert site.refresh() is False
    assert site.current() is old and old.path.exists()
    assert any("could not build" in line and "disk full" in line and old.path.name in line
               for line in site.logged)
    page, rows = _get(site, "/-/documents/1", ANNOTATIONS)
    assert page.status_code == 200 and NEW not in page.text and len(rows.json()) == 1
    assert site.check() is False and len(calls) == 1  # the same head is not retried at once
    assert site.check(retry=True) is False and len(calls) == 2  # SIGHUP retries
    monkeypatch.undo()
    assert site.check(retry=True) is True
    assert NEW in _get(site, "/-/documents/1")[0].text


def test_one_build_at_a_time(site, archive_path, monkeypatch):
    building, finish = threading.Event(), threading.Event()
    real = stet.serve.open_snapshot

    def slow(source, cache=None):
        building.set()
        finish.wait(30)
        return real(source, cache)

    monkeypatch.setattr(stet.serve, "open_snapshot", slow)
    _annotate(archive_path)
    results = []
    first = threading.Thread(target=lambda: results.append(site.refresh()))
    first.start()
    assert building.wait(30)
    assert site.refresh() is False  # another build is running: not a second one
    assert _get(site, "/-/documents/1")[0].status_code == 200  # requests are not held up
    finish.set()
    first.join(30)
    assert results == [True] and NEW in _get(site, "/-/documents/1")[0].text


def test_restricted_material_disappears_after_the_refresh(site, archive_path):
    page, docs, search = _get(site, "/-/documents/1", DOCUMENTS, "/-/search?q=life")
    assert page.status_code == 200 and len(docs.json()) == 1 and SECRET in search.text
    with Archive(archive_path) as archive:
        archive.restrict(1, reason="consent withdrawn", by="ana")
    assert site.check() is True
    page, raw, docs, rows, search, download = _get(
        site, "/-/documents/1", "/-/documents/1/raw", DOCUMENTS, ANNOTATIONS, "/-/search?q=life",
        "/archive.db")
    assert page.status_code == 404 and raw.status_code == 404
    assert docs.json() == [] and rows.json() == []
    assert SECRET not in search.text
    assert SECRET.encode() not in download.content and b"a claim" not in download.content
    assert [p for p in snapshot_folder(archive_path).iterdir()] == [site.current().path]


def _lifespan(site):
    """Run the site's ASGI lifespan as a server does; returns a function that shuts it down."""
    messages: asyncio.Queue
    started = threading.Event()
    loop = asyncio.new_event_loop()
    sent = []

    async def main():
        nonlocal messages
        messages = asyncio.Queue()
        await messages.put({"type": "lifespan.startup"})

        async def send(message):
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                started.set()

        await site({"type": "lifespan", "asgi": {"version": "3.0"}}, messages.get, send)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    assert started.wait(30)

    def shutdown():
        loop.call_soon_threadsafe(messages.put_nowait, {"type": "lifespan.shutdown"})
        thread.join(30)
        loop.close()
        return sent

    return shutdown


def _until(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


def test_the_checker_follows_the_archive_and_stops_at_shutdown(archive_path):
    site = LiveSite(archive_path, check_every=0.05, log=lambda message: None)
    first = site.current()
    shutdown = _lifespan(site)
    checker = site._thread
    assert checker.daemon and checker.is_alive()  # never keeps the process alive at exit
    _annotate(archive_path)
    _until(lambda: site.current() is not first)
    assert not first.path.exists()
    current = site.current()
    assert shutdown() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    checker.join(30)
    assert not checker.is_alive()
    assert current.released and current.path.exists()  # the newest stays, for the next start
    _annotate(archive_path, "after the end")
    assert site.check() is False and site.current() is current


def test_check_every_zero_checks_only_when_woken(archive_path):
    site = LiveSite(archive_path, check_every=0, log=lambda message: None)
    first = site.current()
    site.start()
    try:
        _annotate(archive_path)
        assert site.changed() and site.current() is first  # never on its own
        site.wake()
        _until(lambda: site.current() is not first)
    finally:
        site.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_sighup_makes_stet_serve_publish_what_is_new(archive_path):
    port = _free_port()
    stet = pathlib.Path(sys.executable).with_name("stet")
    server = subprocess.Popen(
        [str(stet), "serve", "--db", str(archive_path), "--port", str(port)],
        cwd=archive_path.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "STET_SERVE_CHECK_EVERY": "0"})  # checks on SIGHUP only
    base = f"http://127.0.0.1:{port}"

    def page():
        try:
            return httpx.get(base + "/-/documents/1", timeout=5)
        except httpx.HTTPError:
            return None

    try:
        _until(lambda: server.poll() is not None or page() is not None)
        assert server.poll() is None, server.stderr.read()
        assert NEW not in page().text
        _annotate(archive_path)
        assert NEW not in page().text  # not looked for yet
        server.send_signal(signal.SIGHUP)
        _until(lambda: NEW in page().text)
        rows = httpx.get(base + ANNOTATIONS).json()
        assert NEW in [r["body"] for r in rows]
        assert server.poll() is None  # SIGHUP did not stop it
        server.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn's shutdown, the lifespan's end
        assert server.wait(timeout=30) == 0
        stderr = server.stderr.read()
        assert "now serving" in stderr and "Traceback" not in stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stderr.close()
    assert len(_snapshots(archive_path)) == 1  # the first snapshot went with its last request


def test_check_every_from_the_command_line(monkeypatch, archive_path):
    """--check-every, else $STET_SERVE_CHECK_EVERY, else 5 seconds."""
    seen = []
    monkeypatch.setattr(Archive, "serve", lambda self, **kw: seen.append(kw["check_every"]))

    def serve(*args):
        return CliRunner().invoke(cli, ["serve", "--db", str(archive_path), *args])

    assert serve().exit_code == 0 and seen.pop() == 5.0
    assert serve("--check-every", "0").exit_code == 0 and seen.pop() == 0.0
    monkeypatch.setenv("STET_SERVE_CHECK_EVERY", "0.5")
    assert serve().exit_code == 0 and seen.pop() == 0.5
    monkeypatch.setenv("STET_SERVE_CHECK_EVERY", "often")
    result = serve()
    assert result.exit_code == 1
    assert "STET_SERVE_CHECK_EVERY='often': give a number of seconds" in result.output
    assert "--check-every='x': give a number of seconds" in serve("--check-every", "x").output
    assert "--check-every" in CliRunner().invoke(cli, ["serve", "--help"]).output
