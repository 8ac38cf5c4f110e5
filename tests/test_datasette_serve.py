"""stet serve's pieces: the response cache in front of the immutable snapshot, and the CLI."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from click.testing import CliRunner

from stet.cli import cli
from stet.serve import ResponseCache, cache_budget


class Counting:
    """A toy ASGI app: answers with the path, counting the calls; /big streams 3 chunks."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        path = scope["path"]
        status = 404 if path == "/missing" else 200
        headers = [(b"content-type", b"text/plain")]
        if path == "/cookie":
            headers.append((b"set-cookie", b"ds_csrftoken=abc"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if path == "/big":
            for _ in range(3):
                await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            host = dict(scope["headers"]).get(b"host", b"").decode()
            body = f"{path}?{scope['query_string'].decode()}"
            await send({"type": "http.response.body",
                        "body": (body + " " + host if path == "/host" else body).encode()})


def fetch(app, *requests):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(method, url, headers=headers or {})
                    for method, url, headers in requests]

    return asyncio.run(go())


def test_cache_answers_repeated_anonymous_gets():
    inner = Counting()
    app = ResponseCache(inner, budget=1000)
    first, second, other = fetch(app, ("GET", "/a?x=1", None), ("GET", "/a?x=1", None),
                                 ("GET", "/a?x=2", None))
    assert first.text == second.text == "/a?x=1" and other.text == "/a?x=2"
    assert inner.calls == 2


@pytest.mark.parametrize("method, url, headers", [
    ("GET", "/missing", None),                 # not a 200
    ("GET", "/cookie", None),                  # sets a cookie
    ("GET", "/a", {"cookie": "ds_actor=x"}),   # a visitor with a cookie
    ("POST", "/a", None),
    ("GET", "/big", None),                     # 300 bytes: over a quarter of the budget
])
def test_cache_keeps_nothing_personal_or_large(method, url, headers):
    inner = Counting()
    app = ResponseCache(inner, budget=1000)
    responses = fetch(app, (method, url, headers), (method, url, headers))
    assert responses[0].content == responses[1].content
    assert inner.calls == 2


def test_cache_key_includes_the_host():
    inner = Counting()
    app = ResponseCache(inner, budget=1000)
    evil, good = fetch(app, ("GET", "/host", {"host": "evil.example"}),
                       ("GET", "/host", {"host": "test"}))
    assert evil.text == "/host? evil.example" and good.text == "/host? test"
    assert inner.calls == 2


def test_cache_evicts_least_recently_used():
    inner = Counting()
    app = ResponseCache(inner, budget=25)  # room for four 6-byte answers ("/aaaa?")
    paths = ["/aaaa", "/bbbb", "/cccc", "/dddd", "/aaaa", "/eeee", "/bbbb", "/aaaa"]
    fetch(app, *[("GET", p, None) for p in paths])
    # /eeee pushes out /bbbb (least recently used, since /aaaa was used again);
    # /bbbb then pushes out /cccc; /aaaa is answered from the cache twice
    assert inner.calls == 6


def test_cache_budget_from_environment(monkeypatch, tmp_path):
    """The library takes ``cache_mb``; the command line reads it from --cache-mb or
    $STET_SERVE_CACHE_MB."""
    from stet import Archive

    budgets = []
    monkeypatch.setattr(Archive, "serve", lambda self, **kw: budgets.append(
        cache_budget(kw["cache_mb"])))
    Archive(tmp_path / "archive.db").close()

    def serve(*args):
        return CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "archive.db"), *args])

    monkeypatch.setenv("STET_SERVE_CACHE_MB", "0")
    assert serve().exit_code == 0 and budgets.pop() == 0
    monkeypatch.setenv("STET_SERVE_CACHE_MB", "lots")
    result = serve()
    assert result.exit_code == 1
    assert "STET_SERVE_CACHE_MB='lots': give a number of megabytes" in result.output
    assert "--cache-mb='x': give a number" in serve("--cache-mb", "x").output
    assert serve("--cache-mb", "2").exit_code == 0 and budgets.pop() == 2 * 1024 * 1024
    monkeypatch.delenv("STET_SERVE_CACHE_MB")
    assert serve().exit_code == 0 and budgets.pop() == 128 * 1024 * 1024


def test_commands_have_help_with_examples():
    runner = CliRunner()
    for command in ("serve", "publish"):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output and f"stet {command}" in result.output
    assert "--metadata" in runner.invoke(cli, ["serve", "--help"]).output


def test_stet_serve_runs(tmp_path):
    """The real command: builds the snapshot beside the archive and serves it read-only."""
    import os
    import pathlib
    import socket
    import subprocess
    import sys
    import time

    from stet import Archive

    doc = tmp_path / "a.txt"
    doc.write_text("Everyone has the right to life.\n", encoding="utf-8")
    secret = tmp_path / "s.txt"
    secret.write_text("Quorrin Vantablack was there.\n", encoding="utf-8")
    with Archive(tmp_path / "archive.db") as archive:
        archive.ingest([doc], by="ana")
        archive.ingest([secret], by="ana", restricted=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stet = pathlib.Path(sys.executable).with_name("stet")
    server = subprocess.Popen([str(stet), "serve", "--db", "archive.db", "--port", str(port)],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "STET_SERVE_CACHE_MB": "8"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # waiting for start-up, not timing anything
            try:
                if httpx.get(base + "/-/versions.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.1)
        index = httpx.get(base + "/")
        assert "stet archive" in index.text  # the packaged metadata: no ./metadata.yml here
        page = httpx.get(base + "/-/documents/1")
        assert page.status_code == 200 and "Everyone has the right to life." in page.text
        assert httpx.get(base + "/-/documents/2").status_code == 404
        rows = httpx.get(base + "/archive.json?_shape=array&sql=select+count(*)+as+n+from+documents")
        assert rows.json() == [{"n": 1}]
        assert httpx.get(base + "/archive.json?sql=delete+from+documents").status_code == 400
        assert b"Quorrin" not in httpx.get(base + "/archive.db").content
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "archive.db-public").exists()
