"""Serving and leftovers (issue 10, items 12-14): a running server keeps serving the one
snapshot it opened while another builds a new one; snapshots no server holds and temporary
files of killed builds are removed by the next run, never a live one's; nothing but GET,
HEAD and OPTIONS is answered on the public site."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stet import Archive
from stet.publish import publish
from stet.snapshots import open_snapshot, snapshot_folder
from stet.serve import make_datasette, prepare

LATER = "Zanzibar accord, signed later"


@pytest.fixture
def archive_path(tmp_path):
    doc = tmp_path / "a.txt"
    doc.write_text("Everyone has the right to life.\n", encoding="utf-8")
    path = tmp_path / "archive.db"
    with Archive(path) as archive:
        archive.ingest([doc], by="ana")
        archive.annotate(1, layer="claims", body="a claim", by="ana", quote="right to life")
    return path


def _add(archive_path, name, text):
    doc = archive_path.parent / name
    doc.write_text(text + "\n", encoding="utf-8")
    with Archive(archive_path) as archive:
        archive.ingest([doc], by="ana")


def _get(ds, *urls):
    async def go():
        return [await ds.client.get(url) for url in urls]

    return asyncio.run(go())


COUNT = "/archive.json?_shape=array&sql=select+count(*)+as+n+from+documents"


def test_a_running_server_keeps_serving_its_own_snapshot(archive_path):
    first, first_path = prepare(archive_path)
    page, = _get(first, "/-/documents/1")  # the first server is up and has read its file
    assert page.status_code == 200
    _add(archive_path, "b.txt", LATER)
    second, second_path = prepare(archive_path)  # a second `stet serve` rebuilds
    assert first_path != second_path and first_path.exists()
    # every route of the first answers from the snapshot it opened: pages, SQL, download
    new_page, count, download = _get(first, "/-/documents/2", COUNT, "/archive.db")
    assert new_page.status_code == 404
    assert count.json() == [{"n": 1}]
    assert LATER.encode() not in download.content
    assert hashlib.sha256(download.content).digest() == \
        hashlib.sha256(first_path.read_bytes()).digest()
    # and the second from its own
    new_page, count, download = _get(second, "/-/documents/2", COUNT, "/archive.db")
    assert new_page.status_code == 200 and LATER in new_page.text
    assert count.json() == [{"n": 2}]
    assert LATER.encode() in download.content


def _child(code: str, *args, **kwargs):
    """A Python process running ``code`` (the test's own hooks, no hook in stet)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kwargs)


HOLD = """
    import sys
    from stet.snapshots import open_snapshot
    snapshot = open_snapshot(sys.argv[1])
    print(snapshot.path, flush=True)
    sys.stdin.readline()
"""


def test_old_snapshots_go_when_no_server_holds_them(archive_path):
    folder = snapshot_folder(archive_path)
    server = _child(HOLD, archive_path)  # a server, in another process, holding its snapshot
    held = folder.parent / server.stdout.readline().strip()
    assert held.parent == folder and held.exists()
    with open_snapshot(archive_path) as same:
        assert same.path == held  # unchanged archive: reused
    _add(archive_path, "b.txt", LATER)
    with open_snapshot(archive_path) as second:
        assert held.exists()  # still held by the running server
        _add(archive_path, "c.txt", "third")
        with open_snapshot(archive_path) as third:
            assert second.path.exists()  # held here
    server.send_signal(signal.SIGKILL)  # a server killed holds nothing
    server.wait()
    _add(archive_path, "d.txt", "fourth")
    with open_snapshot(archive_path) as fourth:
        assert sorted(p.name for p in folder.iterdir()) == [fourth.path.name]
    assert not held.exists() and not second.path.exists() and not third.path.exists()


KILLED = """
    import os, signal, sys
    import stet.publish
    import stet.snapshots
    def killed(path):  # the temporary file is complete: die before it is moved into place
        os.kill(os.getpid(), signal.SIGKILL)
    stet.publish.file_hash = killed
    if sys.argv[2] == "serve":
        stet.snapshots.open_snapshot(sys.argv[1])
    else:
        stet.publish.publish(sys.argv[1], sys.argv[2])
"""

PAUSED = """
    import sys
    import stet.publish
    real = stet.publish.file_hash
    def paused(path):
        print(path, flush=True)
        sys.stdin.readline()
        return real(path)
    stet.publish.file_hash = paused
    stet.publish.publish(sys.argv[1], sys.argv[2])
    print("done", flush=True)
"""


@pytest.mark.parametrize("where", ["publish", "serve"])
def test_kill_9_leftovers_are_removed_by_the_next_run_never_a_live_one(archive_path, tmp_path,
                                                                       where):
    if where == "publish":
        site = tmp_path / "site"
        site.mkdir()
        out = site / "archive.db"
    else:
        site = snapshot_folder(archive_path)
        out = "serve"
    killed = _child(KILLED, archive_path, out)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p for p in site.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    left = leftovers[0]
    assert left.name.startswith(".") and left.read_bytes()[:15] == b"SQLite format 3"
    # hidden, and never named like a database Datasette would serve from the folder
    assert not left.name.endswith((".db", ".sqlite", ".sqlite3"))
    # a live publish into the same folder, paused with its temporary file complete
    live = _child(PAUSED, archive_path, site / "other.db")
    live_tmp = site / os.path.basename(live.stdout.readline().strip())
    assert live_tmp.exists()
    try:
        if where == "publish":
            publish(archive_path, out)
            assert out.exists()
        else:
            with open_snapshot(archive_path) as snapshot:
                assert snapshot.path.parent == site
        assert not left.exists()  # the killed build's file is gone
        assert live_tmp.exists()  # the live one's is not
    finally:
        live.stdin.write("\n")
        live.stdin.close()
    assert live.stdout.readline().strip() == "done"
    assert live.wait() == 0
    assert not live_tmp.exists() and (site / "other.db").exists()
    assert [p.name for p in site.iterdir() if p.name.endswith(".tmp")] == []


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_only_reads_are_answered_on_the_public_site(archive_path):
    snapshot = open_snapshot(archive_path)
    ds = make_datasette(snapshot)
    before = _sha256(snapshot.path)
    urls = ["/archive/documents", "/archive/documents/1", "/archive/annotations",
            "/archive/annotation_history?annotation=1", "/archive/document_provenance",
            "/archive?sql=delete+from+documents", "/archive", "/archive.db", "/",
            "/-/documents/1", "/-/documents/1/raw", "/-/search?q=life"]

    async def go():
        answers = []
        for url in urls:
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                response = await ds.client.request(method, url, data={"annotation": "1"})
                answers.append((method, url, response.status_code,
                                response.headers.get("allow")))
        gets = [(await ds.client.get(url)).status_code for url in urls if "sql=" not in url]
        return answers, gets

    answers, gets = asyncio.run(go())
    assert [a for a in answers if a[2:] != (405, "GET, HEAD, OPTIONS")] == []
    assert set(gets) == {200}
    assert _sha256(snapshot.path) == before
    snapshot.close()


def test_a_live_archive_keeps_its_posts(archive_path):
    """The guard is for sites where nothing can write: a Datasette on a mutable database (the
    workbench, later) still routes POSTs; the plugin's own pages only read, anywhere."""
    from datasette.app import Datasette

    ds = Datasette([str(archive_path)])

    async def go():
        return (await ds.client.post("/archive/documents"), await ds.client.post("/-/documents/1"))

    core, page = asyncio.run(go())
    assert "this site is read-only" not in core.text  # Datasette's own handling, not the guard's
    assert page.status_code == 405
