"""Serving speed: stet serve over 20,000 documents and 1,000,000 annotations.

Builds (once, in benchmarks/work/serve/) an archive of 20,000 ingested text documents and
1,000,000 annotations (document 1 carries 1,000 of them; the rest spread over the others),
runs the real ``stet serve`` on 127.0.0.1 in a subprocess, and drives it with a bounded
load generator: a fixed number of requests per page over 10 connections (httpx, asyncio).
Every page is measured in the same run as ``select 1``, the floor of any Datasette request.

    .venv/bin/python benchmarks/serve.py              # build if needed, then measure
    .venv/bin/python benchmarks/serve.py --requests 500 --rebuild

It measures twice: ``stet serve`` as it runs by default (the immutable snapshot lets it keep
the answers to anonymous GET requests), then with that cache off (``STET_SERVE_CACHE_MB=0``),
each time beside its own ``select 1``. The document page keeps its rendered text and marks in
both cases; the "first request" column is the cost before anything is cached.

The annotations are written with SQL straight into ``annotation_revisions`` (the triggers
still check every span and keep ``annotations`` current); building the archive is not
what is measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stet import Archive, timeutil  # noqa: E402  (imported after the sys.path line above)
from stet.snapshots import ensure_snapshot  # noqa: E402  (imported after the sys.path line above)

WORK = ROOT / "benchmarks" / "work" / "serve"
DOCUMENTS = 20_000
ANNOTATIONS = 1_000_000
BIG_DOC_ANNOTATIONS = 1_000
LAYERS = ("entities", "claims", "fact-check", "translation", "dates")
AUTHORS = ("ana", "reza", "leila", "omar", "sam", "noor")
CONNECTIONS = 10


def vocabulary() -> list[str]:
    words = set()
    for name in ("udhr_eng.txt", "udhr_pes_1.txt", "udhr_arb.txt"):
        text = (ROOT / "ingest" / "udhr" / name).read_text(encoding="utf-8")
        words.update(w for w in re.findall(r"\w+", text) if len(w) > 2)
    return sorted(words)


def build(path: Path) -> None:
    rng = random.Random(20261129)
    words = vocabulary()
    files = WORK / "files"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir(parents=True)
    for i in range(1, DOCUMENTS + 1):
        count = 4000 if i == 1 else rng.randint(250, 450)
        body = " ".join(rng.choice(words) for _ in range(count))
        lines = [body[j:j + 100] for j in range(0, len(body), 100)]
        (files / f"doc{i:05d}.txt").write_text(f"Document {i}\n" + "\n".join(lines) + "\n",
                                               encoding="utf-8")
    started = time.perf_counter()
    with Archive(path) as archive:
        archive.ingest([files], by="bench", source="benchmark corpus")
        print(f"ingested {DOCUMENTS} documents in {time.perf_counter() - started:.1f} s")
        conn = archive.conn
        now = timeutil.now()
        stamp = timeutil.iso(now)
        with archive.write():
            conn.executemany(
                "INSERT INTO layers (id, name, description, colour, created_by, created) "
                "VALUES (?, ?, ?, NULL, 'bench', ?)",
                [(i + 1, name, f"the {name} layer", stamp) for i, name in enumerate(LAYERS)])
        lengths = dict(conn.execute("SELECT document, length FROM texts"))
        texts = {1: conn.execute("SELECT text FROM texts WHERE document = 1").fetchone()[0]}
        started = time.perf_counter()
        ann_id = 0
        rows = []

        def flush():
            conn.executemany(
                "INSERT INTO annotation_revisions (annotation, revision, uuid, document, layer, "
                'reply_to, start, "end", exact, prefix, suffix, body, motivation, tags, creator, '
                "author, created, modified, modified_us, status, reason) "
                "VALUES (?, 1, ?, ?, ?, NULL, ?, ?, ?, '', '', ?, 'commenting', '[]', ?, ?, ?, ?, ?, "
                "'active', NULL)", rows)
            rows.clear()

        with archive.write():
            for doc in range(1, DOCUMENTS + 1):
                n = BIG_DOC_ANNOTATIONS if doc == 1 else \
                    (ANNOTATIONS - BIG_DOC_ANNOTATIONS) // (DOCUMENTS - 1) + \
                    (1 if doc - 2 < (ANNOTATIONS - BIG_DOC_ANNOTATIONS) % (DOCUMENTS - 1) else 0)
                text = texts.get(doc) or conn.execute(
                    "SELECT text FROM texts WHERE document = ?", (doc,)).fetchone()[0]
                length = lengths[doc]
                for _ in range(n):
                    ann_id += 1
                    start = rng.randrange(0, length - 40)
                    end = start + rng.randint(3, 40)
                    author = rng.choice(AUTHORS)
                    us = timeutil.micros(now) + ann_id
                    when = timeutil.from_micros(us)
                    rows.append((ann_id, str(uuid.UUID(int=rng.getrandbits(128))), doc,
                                 rng.randint(1, len(LAYERS)), start, end, text[start:end],
                                 f"note {ann_id}: {rng.choice(words)} {rng.choice(words)}",
                                 author, author, when, when, us))
                if len(rows) >= 20_000:
                    flush()
            flush()
        print(f"wrote {ann_id} annotations in {time.perf_counter() - started:.1f} s")
    shutil.rmtree(files, ignore_errors=True)


def wait_until_up(server: subprocess.Popen, base: str, limit: float) -> None:
    """Until the server at ``base`` answers (``/-/versions.json``); SystemExit with its stderr
    if it exits or ``limit`` seconds pass first."""
    import httpx

    deadline = time.monotonic() + limit
    while True:
        try:
            if httpx.get(base + "/-/versions.json", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start: " + server.stderr.read().decode())
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(client, targets: list[str]) -> tuple[list[float], float]:
    """Request every URL of ``targets`` once, CONNECTIONS at a time: each latency (sorted)
    and the wall time; any answer but 200 stops the benchmark."""
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for target in targets:
        queue.put_nowait(target)

    async def worker():
        while True:
            try:
                target = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            response = await client.get(target)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{target}: HTTP {response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    wall = time.perf_counter() - started
    latencies.sort()
    return latencies, wall


async def measure(client, url: str, requests: int) -> dict:
    started = time.perf_counter()
    await client.get(url)  # the first request: nothing cached yet
    cold = time.perf_counter() - started
    for _ in range(min(20, requests)):  # warm up: caches, connections, threads
        await client.get(url)
    latencies, wall = await load(client, [url] * requests)
    return {"rps": requests / wall, "median_ms": statistics.median(latencies) * 1000,
            "cold_ms": cold * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000}


async def run_all(base: str, pages: list[tuple[str, str]], requests: int) -> list[tuple]:
    import httpx

    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    results = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        for name, url in pages:
            results.append((name, url, await measure(client, url, requests)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per page")
    parser.add_argument("--rebuild", action="store_true", help="build the archive again")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "archive.db"
    if args.rebuild or not path.exists():
        for p in WORK.glob("archive.db*"):
            p.unlink()
        build(path)
    started = time.perf_counter()
    snapshot = ensure_snapshot(path)
    print(f"public snapshot ready in {time.perf_counter() - started:.1f} s "
          f"({snapshot.stat().st_size / 1e6:.0f} MB)")
    import sqlite3

    snap = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    docs, anns = snap.execute("SELECT (SELECT count(*) FROM documents), "
                              "(SELECT count(*) FROM annotations)").fetchone()
    big = snap.execute("SELECT count(*) FROM annotations WHERE document = 1").fetchone()[0]
    word = "freedom"
    matches = snap.execute("SELECT count(*) FROM documents_fts WHERE documents_fts MATCH ?",
                           (word,)).fetchone()[0]
    ann_matches = snap.execute("SELECT count(*) FROM annotations_fts WHERE annotations_fts MATCH ?",
                               (word,)).fetchone()[0]
    snap.close()
    print(f"{docs} documents, {anns} annotations, {big} on document 1; "
          f"'{word}' is in {matches} documents and {ann_matches} annotations")
    for cache in (True, False):
        serve_and_measure(path, word, args.requests, cache)


def serve_and_measure(path: Path, word: str, requests: int, cache: bool) -> None:
    """Start ``stet serve`` (with or without its response cache) and measure every page."""
    port = free_port()
    env = {**os.environ, "STET_SERVE_CACHE_MB": "128" if cache else "0"}
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "stet"), "serve", "--db", str(path), "--port", str(port),
         "--metadata", str(ROOT / "metadata.yml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, base, 120)
        pages = [
            ("select 1 (floor, JSON)", "/archive.json?sql=select+1"),
            ("document page, 1,000 annotations", "/-/documents/1"),
            ("annotations of a document (table page)", "/archive/annotations?document=1"),
            ("search page (documents and annotations)", f"/-/search?q={word}"),
            ("documents table search", f"/archive/documents?_search={word}"),
            ("canned overlap query", "/archive/annotations_overlapping?document=1&start=1000&end=1400"),
            ("canned overlap query (JSON)",
             "/archive/annotations_overlapping.json?document=1&start=1000&end=1400"),
            ("row page of an annotation", "/archive/annotations/500000"),
        ]
        load = os.getloadavg()
        results = asyncio.run(run_all(base, pages, requests))
    finally:
        server.terminate()
        server.wait(timeout=30)
    floor = results[0][2]["rps"]
    print(f"\nstet serve {'with' if cache else 'without'} its response cache "
          f"(STET_SERVE_CACHE_MB={env['STET_SERVE_CACHE_MB']}); {requests} requests per page, "
          f"{CONNECTIONS} connections, {os.cpu_count()} CPUs, server and load generator on this "
          f"machine; load average before the run {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)\n")
    print("| page | requests/s | median ms | p95 ms | first request ms | of select 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, url, r in results:
        print(f"| {name} (`{url}`) | {r['rps']:.0f} | {r['median_ms']:.1f} | "
              f"{r['p95_ms']:.1f} | {r['cold_ms']:.0f} | {r['rps'] / floor:.2f} |")

if __name__ == "__main__":
    main()
