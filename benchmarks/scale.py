"""Scale: 100,000 documents and 10,000,000 annotations, built in stages, with the figures
of each stage so that the growth is visible (issue 14).

    .venv/bin/python benchmarks/scale.py                        # 10 stages of 10,000 + 1,000,000
    .venv/bin/python benchmarks/scale.py --stages 3 --documents 6000 --annotations 300000

Each stage, in a fresh work folder (``--workdir``, default ``benchmarks/work/scale``):

1. generates (seeded) its share of the documents: text files in three scripts (English,
   Persian with ZWNJ, Arabic with harakat, the words of the UDHR samples in ``ingest/udhr``,
   with ``benchmarks/annotations.py``'s emoji and combining sequences mixed in), lognormal
   sizes (median about 4 KB, the largest 256 KB), and times ``stet ingest -s`` of them, as a
   user would run it (files/s and MB/s);
2. writes its share of the annotations as W3C JSON Lines, as ``stet export --history
   --format jsonl`` writes them (``benchmarks/annotations.py``'s pattern: every tenth
   revised, every fiftieth then retracted; nine tenths on the stage's own documents, one
   tenth on earlier ones), and times ``stet import`` of the file (annotations/s);
3. times ``stet verify`` of the whole archive;
4. times, in-process on the archive opened read-only, 200 overlap queries (the canned
   query ``annotations_overlapping``'s SQL, and ``Archive.annotations(doc, overlapping=)``)
   and 200 as-of queries (``Archive.annotations(doc, at=)`` at a past instant), on random
   documents of the whole archive;
5. records the archive's size and every command's peak memory (max RSS from ``wait4``).

At the stages given by ``--publish-at`` (the first and the last by default), it times a
full ``stet publish`` (a fresh snapshot) and records its size; then, if ``stet publish``
can update a snapshot (an option ``--full`` or ``--incremental`` in its ``--help``), adds one
document and ten annotations and times the incremental publish (otherwise "not available");
then serves the snapshot with stet's Datasette and response cache under uvicorn (as ``stet
serve`` does, without building a second snapshot) and drives document pages and searches
with ``benchmarks/serve.py``'s load generator (httpx, 10 connections): random documents and
random words (each a first request), and one document and one word repeated.

Every command runs after ``sync`` and is measured with ``wait4``: wall time, CPU time (user
and system, its worker processes included: on a shared machine the steadier measure of what
the archive's growth costs) and peak memory. Prints Markdown tables for
``benchmarks/README.md`` (``--json``: one JSON object; ``--save FILE`` writes it after every
stage, ``--tables-from FILE`` prints the tables of a saved one). The work folder is removed at
the end unless ``--keep``. ``STET_SOURCE=DIR`` measures the copy of ``stet/`` in DIR instead
of this checkout's (through ``PYTHONPATH`` for every command), so that others' edits do not
change the code under a run of an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where stet's source is: this checkout, or with ``STET_SOURCE=DIR`` a copy of its ``stet/``
#: folder in DIR, so that a long run measures code that others' edits do not change under it.
SRC = Path(os.environ.get("STET_SOURCE") or ROOT).resolve()
sys.path.insert(0, str(SRC))

from stet import Archive, timeutil  # noqa: E402  (imported after the sys.path line above)
from stet.annotations import w3c  # noqa: E402

sys.path.insert(1, str(ROOT / "benchmarks"))  # after SRC: both scripts put ROOT first

import yaml  # noqa: E402
from annotations import WORDS as MIXED_WORDS  # noqa: E402
from annotations import later_revisions  # noqa: E402
from serve import CONNECTIONS, free_port, load, wait_until_up  # noqa: E402
from serve import measure as measure_one_url  # noqa: E402

STET = ROOT / ".venv" / "bin" / "stet"
PYTHON = ROOT / ".venv" / "bin" / "python"
LAYERS = ("entities", "claims", "translation", "fact-check", "dates")
#: When the generated annotations begin; annotation n is created 10 ms after n - 1.
EPOCH_US = timeutil.parse_micros("2026-01-01T00:00:00Z")
STEP_US = 10_000
DAY_US = 86_400_000_000
TARGETS = {"ingest_ratio": 1.2, "import_ratio": 1.2, "overlap_ms": 0.2, "asof_ms": 5.0,
           "document_rps": 100, "document_median_ms": 100, "search_median_ms": 250,
           "page_median_ms": 250}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- documents ---------------------------------------------------------------------------

def vocabularies() -> dict[str, list[str]]:
    """The words of each UDHR sample in ``ingest/udhr``, by script."""
    out = {}
    for script, name in (("en", "udhr_eng.txt"), ("fa", "udhr_pes_1.txt"), ("ar", "udhr_arb.txt")):
        text = (ROOT / "ingest" / "udhr" / name).read_text(encoding="utf-8")
        out[script] = sorted({w for w in re.findall(r"\S+", text) if len(w) > 1})
    return out


def make_documents(folder: Path, first: int, count: int, rng: random.Random,
                   vocab: dict[str, list[str]]) -> int:
    """``count`` text files numbered from ``first`` in folders of 1,000; returns their bytes.
    Half English, a quarter Persian, a quarter Arabic, each with a word in twenty from the
    mixed list (emoji ZWJ sequences, flags, combining accents, harakat, ZWNJ)."""
    total = 0
    scripts = ("en", "en", "fa", "ar")
    for n in range(first, first + count):
        words = vocab[scripts[n % 4]]
        size = int(min(max(rng.lognormvariate(8.3, 1.0), 400), 256_000))  # bytes, roughly
        count_words = max(60, size // 7)
        chosen = rng.choices(words, k=count_words)
        for i in rng.sample(range(count_words), count_words // 20):
            chosen[i] = rng.choice(MIXED_WORDS)
        lines = [" ".join(chosen[i:i + 14]) for i in range(0, count_words, 14)]
        data = (f"Document {n}\n" + "\n".join(lines) + "\n").encode("utf-8")
        sub = folder / f"box{n // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"doc{n:07d}.txt").write_bytes(data)
        total += len(data)
    return total


# -- annotations -------------------------------------------------------------------------

_DOC_SQL = ("SELECT d.id, d.sha256, d.ingested_at, t.sha256, t.text FROM documents d "
            "JOIN texts t ON t.document = d.id")


class AnnotationWriter:
    """W3C JSON Lines of generated annotations, numbered globally across stages (annotation
    n is created at ``EPOCH_US + n * STEP_US``; its later revisions a day apart each)."""

    def __init__(self, rng: random.Random, vocab: dict[str, list[str]]) -> None:
        self.rng = rng
        self.words = vocab["en"] + vocab["fa"] + vocab["ar"]
        self.n = 0
        self.lines = 0

    def write(self, out, doc, count: int) -> None:
        doc_id, sha, ingested, text_sha, text = doc
        rng = self.rng
        for _ in range(count):
            n = self.n
            self.n += 1
            length = rng.randint(1, 40)
            start = rng.randrange(0, len(text) - length)
            created = timeutil.from_micros(EPOCH_US + n * STEP_US)
            row = {
                "revision": 1, "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "layer": rng.choice(LAYERS), "parent": None,
                "start": start, "end": start + length, "exact": text[start:start + length],
                "prefix": text[max(0, start - 32):start],
                "suffix": text[start + length:start + length + 32],
                "body": f"note {n}: {rng.choice(self.words)} {rng.choice(self.words)}",
                "motivation": "commenting", "tags": '["bench"]',
                "creator": f"annotator{n % 7}", "author": f"annotator{n % 7}",
                "created": created, "modified": created, "status": "active", "reason": None,
                "source": sha, "ingested_at": ingested, "text_sha256": text_sha,
            }
            out.write(w3c._dumps(w3c.to_w3c(row, history=True)) + "\n")
            self.lines += 1
            for revision, status in later_revisions(n):
                modified = timeutil.from_micros(EPOCH_US + n * STEP_US + (revision - 1) * DAY_US)
                row.update(revision=revision, status=status, body=f"{row['body']} r{revision}",
                           author="reviewer", modified=modified)
                out.write(w3c._dumps(w3c.to_w3c(row, history=True)) + "\n")
                self.lines += 1

    def stage(self, db: Path, path: Path, after: int, count: int) -> tuple[int, int]:
        """Annotations for a stage whose documents have ids above ``after``: nine tenths
        spread evenly over them (streamed in id order: one text in memory at a time), one
        tenth in runs of ten on random earlier documents (none in the first stage).
        Returns (annotations, lines)."""
        lines0 = self.lines
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            new = conn.execute("SELECT count(*) FROM documents WHERE id > ?", (after,)).fetchone()[0]
            old = count // 10 if after else 0
            old -= old % 10
            on_new = count - old
            with open(path, "w", encoding="utf-8") as out:
                for i, doc in enumerate(conn.execute(f"{_DOC_SQL} WHERE d.id > ? ORDER BY d.id",
                                                     (after,))):
                    self.write(out, doc, on_new // new + (1 if i < on_new % new else 0))
                for _ in range(old // 10):
                    doc = None
                    while doc is None:  # an id with a text (every generated one has)
                        doc = conn.execute(f"{_DOC_SQL} WHERE d.id = ?",
                                           (self.rng.randint(1, after),)).fetchone()
                    self.write(out, doc, 10)
        finally:
            conn.close()
        return count, self.lines - lines0


# -- commands ----------------------------------------------------------------------------

def run(cmd: list[str], out: Path | None = None, check: bool = True) -> dict:
    """Run a command after ``sync`` (so the previous step's writes are not flushed while this
    one is timed); its wall seconds, peak memory (max RSS from ``wait4``) and exit code."""
    os.sync()
    env = {**os.environ, "STET_USER": "bench", "PYTHONPATH": str(SRC)}
    sink = open(out, "wb") if out else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    finally:
        if out:
            sink.close()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4
    if check and code != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({code}): {stderr.decode()[-2000:]}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss * 1024, "code": code,
            "stderr": stderr.decode(errors="replace")}


def stet(*args, out: Path | None = None, check: bool = True) -> dict:
    return run([str(STET), *map(str, args)], out=out, check=check)


def newest_source() -> str:
    """The newest file of stet's source and when it changed (others edit it meanwhile)."""
    newest = max((SRC / "stet").rglob("*.py"), key=lambda p: p.stat().st_mtime)
    return (f"{newest.relative_to(SRC)} "
            f"{time.strftime('%H:%M:%S', time.gmtime(newest.stat().st_mtime))} UTC")


def db_size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


# -- queries -----------------------------------------------------------------------------

def canned_overlap_sql() -> str:
    meta = yaml.safe_load((SRC / "stet" / "metadata.yml").read_text(encoding="utf-8"))
    return meta["databases"]["archive"]["queries"]["annotations_overlapping"]["sql"]


def stats(times: list[float]) -> dict:
    times = sorted(times)
    return {"median_ms": statistics.median(times), "p99_ms": times[max(0, int(len(times) * 0.99) - 1)],
            "max_ms": times[-1]}


def queries(db: Path, rng: random.Random, count: int, last_us: int) -> dict:
    """Overlap and as-of query times on random documents of the whole archive (in-process,
    the archive opened read-only; 20 untimed first)."""
    sql = canned_overlap_sql()
    with Archive(db, readonly=True) as archive:
        conn = archive.conn
        top = conn.execute("SELECT max(document) FROM texts").fetchone()[0]
        windows = []
        while len(windows) < count + 20:
            d = rng.randint(1, top)
            row = conn.execute("SELECT length FROM texts WHERE document = ?", (d,)).fetchone()
            if row and row[0] > 60:
                n = rng.randrange(0, row[0] - 50)
                windows.append((d, n, n + 50))
        instants = [(rng.randint(1, top), rng.randrange(EPOCH_US, last_us))
                    for _ in range(count + 20)]
        sql_ms, api_ms, asof_ms, found = [], [], [], [0, 0]
        for i, (d, n, m) in enumerate(windows):
            t0 = time.perf_counter()
            rows = conn.execute(sql, {"document": d, "start": n, "end": m}).fetchall()
            t1 = time.perf_counter()
            listed = list(archive.annotations(d, overlapping=(n, m)))
            t2 = time.perf_counter()
            if i >= 20:
                sql_ms.append((t1 - t0) * 1000)
                api_ms.append((t2 - t1) * 1000)
                found[0] += len(rows)
            assert len(rows) == len(listed), (d, n, m, len(rows), len(listed))
        for i, (d, at) in enumerate(instants):
            t0 = time.perf_counter()
            listed = list(archive.annotations(d, at=at))
            if i >= 20:
                asof_ms.append((time.perf_counter() - t0) * 1000)
                found[1] += len(listed)
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, {"document": 1, "start": 0, "end": 1}).fetchall()
    return {"overlap_sql": stats(sql_ms), "overlap_api": stats(api_ms), "asof": stats(asof_ms),
            "overlap_rows_mean": found[0] / count, "asof_rows_mean": found[1] / count,
            "plan": " / ".join(r[-1] for r in plan)}


# -- publishing and serving --------------------------------------------------------------

def publish_modes() -> dict:
    """What ``stet publish`` offers: an option for a full or an incremental build."""
    text = subprocess.run([str(STET), "publish", "--help"], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(SRC)}).stdout
    return {"full": "--full" in text, "incremental": "--incremental" in text}


SERVER = """
import sys, uvicorn
from stet.serve import ResponseCache, cache_budget, make_datasette
ds = make_datasette(sys.argv[1])
uvicorn.run(ResponseCache(ds.app(), budget=cache_budget(128)), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning", lifespan="on")
"""


async def measure_urls(client, urls: list[str]) -> dict:
    """``benchmarks/serve.py``'s measure, over a list of URLs each requested once (first
    requests: nothing of them cached), after 20 warm-up requests of other URLs."""
    for url in urls[:20]:
        await client.get(url)
    latencies, wall = await load(client, urls[20:])
    return {"rps": len(latencies) / wall, "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000, "cold_ms": None}


async def drive(base: str, pages: list[tuple[str, list[str]]], requests: int) -> list[dict]:
    import httpx

    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    results = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        for name, urls in pages:
            if len(urls) == 1:
                result = await measure_one_url(client, urls[0], requests)
            else:
                result = await measure_urls(client, urls)
            results.append({"page": name, "url": urls[0], **result})
    return results


def serve_under_load(snapshot: Path, rng: random.Random, requests: int,
                     words: list[str]) -> dict:
    conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    top = conn.execute("SELECT max(id) FROM documents").fetchone()[0]
    busiest = conn.execute("SELECT document FROM annotations WHERE document <= 1000 GROUP BY "
                           "document ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    conn.close()
    docs = [f"/-/documents/{rng.randint(1, top)}" for _ in range(requests + 20)]
    searches = [f"/-/search?q={rng.choice(words)}" for _ in range(requests + 20)]
    overlaps = []
    for _ in range(requests + 20):
        start = rng.randrange(0, 2000)
        overlaps.append(f"/archive/annotations_overlapping?document={rng.randint(1, top)}"
                        f"&start={start}&end={start + 200}")
    pages = [
        ("select 1 (floor, JSON)", ["/archive.json?sql=select+1"]),
        ("document page, random documents (each a first request)", docs),
        ("document page, one document repeated (cached after the first)", [f"/-/documents/{busiest}"]),
        ("search page, random words (each a first request)", searches),
        ("search page, one word repeated", ["/-/search?q=freedom"]),
        ("canned overlap query, random documents", overlaps),
    ]
    port = free_port()
    server = subprocess.Popen([str(PYTHON), "-c", SERVER, str(snapshot), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=SRC,
                              env={**os.environ, "PYTHONPATH": str(SRC)})
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    try:
        wait_until_up(server, base, 300)
        ready = time.perf_counter() - started
        load = os.getloadavg()[0]
        results = asyncio.run(drive(base, pages, requests))
    finally:
        server.terminate()
        _, _, usage = os.wait4(server.pid, 0)
        server.returncode = 0
    return {"ready_s": ready, "load": load, "server_rss": usage.ru_maxrss * 1024, "pages": results}


def publish_stage(db: Path, work: Path, stage: int, rng: random.Random,
                  writer: AnnotationWriter, vocab: dict, requests: int) -> dict:
    """A full publish into a fresh snapshot; an incremental one after one document and ten
    annotations, when ``stet publish`` offers it; the snapshot served under load."""
    modes = publish_modes()  # again: stet/publish.py may have changed since the last stage
    snapshot = work / "public.db"
    for p in work.glob("public.db*"):
        p.unlink()
    out = work / "publish.json"
    full = stet("publish", "-s", "--json", "--db", db, snapshot, *(["--full"] if modes["full"] else []),
                out=out)
    result = {"stage": stage, "modes": modes, "full_s": full["seconds"], "full_cpu": full["cpu"],
              "full_rss": full["rss"],
              "snapshot_size": snapshot.stat().st_size, "archive_size": db_size(db)}
    log(f"stage {stage}: full publish {full['seconds']:.1f} s, snapshot "
        f"{result['snapshot_size'] / 1e9:.2f} GB")
    # one more document and ten annotations on it, as a day's work would add
    extra = work / f"extra-{stage}"
    shutil.rmtree(extra, ignore_errors=True)
    extra.mkdir()
    top = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    after = top.execute("SELECT max(id) FROM documents").fetchone()[0]
    top.close()
    make_documents(extra, 9_000_000 + stage, 1, rng, vocab)
    stet("ingest", "-s", "--db", db, "--source", f"scale benchmark, after stage {stage}", extra)
    jsonl = work / f"extra-{stage}.jsonl"
    writer.stage(db, jsonl, after, 10)
    stet("import", "-s", "--db", db, jsonl)
    jsonl.unlink()
    shutil.rmtree(extra)
    if modes["full"] or modes["incremental"]:
        flags = ["--incremental"] if modes["incremental"] else []
        inc = stet("publish", "-s", "--json", "--db", db, snapshot, *flags, out=out, check=False)
        if inc["code"] != 0 and "--force" in inc["stderr"]:
            flags.append("--force")
            inc = stet("publish", "-s", "--json", "--db", db, snapshot, *flags, out=out, check=False)
        if inc["code"] != 0:
            raise SystemExit(f"incremental publish failed: {inc['stderr'][-2000:]}")
        summary = json.loads(out.read_text() or "{}")
        result.update(incremental_s=inc["seconds"], incremental_cpu=inc["cpu"],
                      incremental_rss=inc["rss"],
                      incremental_command=f"stet publish {' '.join(['OUT', *flags])}",
                      incremental_summary={k: v for k, v in summary.items()
                                           if k in ("build", "reason", "published", "added")},
                      snapshot_size_after=snapshot.stat().st_size)
        with Archive(db, readonly=True) as archive:  # nothing restricted: all of it published
            counts = archive.counts()
        published = summary.get("published", {})
        result["incremental_matches_archive"] = (
            published.get("documents") == counts["documents"]
            and published.get("annotation_revisions") == counts["annotation revisions"])
        log(f"stage {stage}: incremental publish {inc['seconds']:.1f} s")
    else:
        result["incremental_s"] = None
        log(f"stage {stage}: incremental publish not available (no --full or --incremental "
            "in stet publish --help)")
    out.unlink(missing_ok=True)
    words = [w for w in vocab["en"] + vocab["fa"] + vocab["ar"] if re.fullmatch(r"\w+", w)]
    result["serve"] = serve_under_load(snapshot, rng, requests, words)
    for page in result["serve"]["pages"]:
        log(f"  {page['page']}: {page['rps']:.0f}/s, median {page['median_ms']:.1f} ms")
    return result


# -- the run -----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--documents", type=int, default=100_000, help="documents in all")
    parser.add_argument("--annotations", type=int, default=10_000_000, help="annotations in all")
    parser.add_argument("--stages", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind a stage")
    parser.add_argument("--requests", type=int, default=300, help="requests per page under load")
    parser.add_argument("--publish-at", default="first,last",
                        help="stages to publish at: numbers, 'first', 'last', 'all', 'none'")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "scale")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--save", type=Path, metavar="JSON",
                        help="write the report so far to this file after every stage")
    parser.add_argument("--tables-from", type=Path, metavar="JSON",
                        help="print the tables of a report saved with --json, and stop")
    args = parser.parse_args()
    if args.tables_from:
        print_tables(json.loads(args.tables_from.read_text()))
        return
    stages = args.stages
    wanted = set()
    for part in args.publish_at.split(","):
        part = part.strip()
        if part == "all":
            wanted.update(range(1, stages + 1))
        elif part == "first":
            wanted.add(1)
        elif part == "last":
            wanted.add(stages)
        elif part and part != "none":
            wanted.add(int(part))

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = work / "archive.db"
    rng = random.Random(args.seed)
    vocab = vocabularies()
    writer = AnnotationWriter(rng, vocab)
    modes = publish_modes()
    report = {"command": " ".join(["benchmarks/scale.py", *sys.argv[1:]]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "load_before": os.getloadavg(), "cpus": os.cpu_count(), "documents": args.documents,
              "annotations": args.annotations, "stages": [], "publishes": [],
              "publish_modes": modes, "stet_changed": newest_source()}
    started = time.perf_counter()
    made = 0
    try:
        for stage in range(1, stages + 1):
            free = shutil.disk_usage(work).free
            if free < 5e9:
                raise SystemExit(f"only {free / 1e9:.1f} GB free in {work}: stopping")
            docs = args.documents // stages + (1 if stage <= args.documents % stages else 0)
            anns = args.annotations // stages + (1 if stage <= args.annotations % stages else 0)
            load = os.getloadavg()[0]
            files = work / "files"
            shutil.rmtree(files, ignore_errors=True)
            t0 = time.perf_counter()
            size = make_documents(files, made + 1, docs, rng, vocab)
            made += docs
            log(f"stage {stage}: generated {docs} documents ({size / 1e6:.1f} MB) in "
                f"{time.perf_counter() - t0:.1f} s")
            if db.exists():
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                after = conn.execute("SELECT coalesce(max(id), 0) FROM documents").fetchone()[0]
                conn.close()
            else:
                after = 0
            ingest = stet("ingest", "-s", "--db", db, "--source", f"scale benchmark, stage {stage}",
                          files)
            shutil.rmtree(files)
            log(f"stage {stage}: ingest {ingest['seconds']:.1f} s ({docs / ingest['seconds']:.0f} files/s)")

            jsonl = work / "annotations.jsonl"
            t0 = time.perf_counter()
            _, lines = writer.stage(db, jsonl, after, anns)
            jsonl_size = jsonl.stat().st_size
            log(f"stage {stage}: wrote {anns} annotations ({lines} revisions, "
                f"{jsonl_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
            imported = stet("import", "-s", "--db", db, jsonl)
            jsonl.unlink()
            log(f"stage {stage}: import {imported['seconds']:.1f} s "
                f"({anns / imported['seconds']:.0f} annotations/s)")

            verified = stet("verify", "-s", "--db", db)
            with Archive(db, readonly=True) as archive:
                counts = archive.counts()
            log(f"stage {stage}: verify {verified['seconds']:.1f} s")
            last_us = EPOCH_US + writer.n * STEP_US + 2 * DAY_US
            q = queries(db, rng, args.queries, last_us)
            log(f"stage {stage}: overlap {q['overlap_sql']['median_ms']:.3f} ms (SQL), "
                f"{q['overlap_api']['median_ms']:.3f} ms (API); as-of {q['asof']['median_ms']:.2f} ms")
            report["stages"].append({
                "stage": stage, "load": load, "documents": counts["documents"],
                "revisions": counts["annotation revisions"], "events": counts["events"],
                "annotations": writer.n,
                "ingest": {"files": docs, "bytes": size, "seconds": ingest["seconds"], "cpu": ingest["cpu"],
                           "files_per_s": docs / ingest["seconds"],
                           "mb_per_s": size / 1e6 / ingest["seconds"], "rss": ingest["rss"]},
                "import": {"annotations": anns, "revisions": lines, "bytes": jsonl_size,
                           "seconds": imported["seconds"], "cpu": imported["cpu"],
                           "annotations_per_s": anns / imported["seconds"], "rss": imported["rss"]},
                "verify": {"seconds": verified["seconds"], "cpu": verified["cpu"], "rss": verified["rss"],
                           "s_per_million_revisions":
                               verified["seconds"] / (counts["annotation revisions"] / 1e6)},
                "queries": q, "archive_size": db_size(db),
                "bench_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "elapsed_s": time.perf_counter() - started,
            })
            if stage in wanted:
                report["publishes"].append(publish_stage(db, work, stage, rng, writer,
                                                         vocab, args.requests))
            if args.save:
                args.save.write_text(json.dumps(report, indent=1))
    finally:
        report["elapsed_s"] = time.perf_counter() - started
        report["load_after"] = os.getloadavg()
        report["stet_changed_after"] = newest_source()
        if args.save:
            args.save.write_text(json.dumps(report, indent=1))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_tables(report)


def summary(report: dict) -> dict:
    stages = report["stages"]
    first, last = stages[0], stages[-1]

    def flat(key):
        values = [s[key]["rss"] for s in stages]
        return min(values), max(values)

    out = {
        "ingest_ratio": first["ingest"]["files_per_s"] / last["ingest"]["files_per_s"],
        "import_ratio": first["import"]["annotations_per_s"] / last["import"]["annotations_per_s"],
        "verify_per_million": [s["verify"]["s_per_million_revisions"] for s in stages],
        "overlap_median_max": max(s["queries"]["overlap_sql"]["median_ms"] for s in stages),
        "overlap_api_median_max": max(s["queries"]["overlap_api"]["median_ms"] for s in stages),
        "asof_median_max": max(s["queries"]["asof"]["median_ms"] for s in stages),
        "rss": {k: flat(k) for k in ("ingest", "import", "verify")},
    }
    if "cpu" in first["ingest"]:
        # CPU seconds (the command and its worker processes) per file and per annotation:
        # what the archive's growth costs, less what other work on the machine adds
        out["ingest_cpu_ratio"] = ((last["ingest"]["cpu"] / last["ingest"]["files"])
                                   / (first["ingest"]["cpu"] / first["ingest"]["files"]))
        out["import_cpu_ratio"] = ((last["import"]["cpu"] / last["import"]["annotations"])
                                   / (first["import"]["cpu"] / first["import"]["annotations"]))
        out["verify_cpu_per_million"] = [s["verify"]["cpu"] / (s["revisions"] / 1e6) for s in stages]
    return out


def trend(values: list[float]) -> float:
    """The mean of the later half of ``values`` over the mean of the earlier half: about 1 when
    a cost per unit neither grows nor shrinks with the stage (noise spreads single stages)."""
    half = len(values) // 2
    if not half:
        return 1.0
    return statistics.mean(values[-half:]) / statistics.mean(values[:half])


def print_tables(report: dict) -> None:
    mb = 1e6
    print(f"\n`{report['command']}`, started {report['started']}, {report['cpus']} CPUs, load "
          f"average {report['load_before'][0]:.2f} before and {report['load_after'][0]:.2f} after; "
          f"{report['elapsed_s'] / 60:.1f} min in all; newest stet source: "
          f"{report['stet_changed']} at the start, {report['stet_changed_after']} at the end\n")
    print("| stage | documents | annotations (revisions) | ingest: files/s | MB/s | import: "
          "annotations/s | `stet verify` | per million revisions | overlap median (p99) | "
          "overlap via `Archive.annotations` | as-of median (p99) | archive | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in report["stages"]:
        q = s["queries"]
        print(f"| {s['stage']} | {s['documents']:,} | {s['annotations']:,} ({s['revisions']:,}) | "
              f"{s['ingest']['files_per_s']:,.0f} | {s['ingest']['mb_per_s']:.1f} | "
              f"{s['import']['annotations_per_s']:,.0f} | {s['verify']['seconds']:.1f} s | "
              f"{s['verify']['s_per_million_revisions']:.1f} s | "
              f"{q['overlap_sql']['median_ms']:.3f} ms ({q['overlap_sql']['p99_ms']:.3f}) | "
              f"{q['overlap_api']['median_ms']:.3f} ms | "
              f"{q['asof']['median_ms']:.2f} ms ({q['asof']['p99_ms']:.2f}) | "
              f"{s['archive_size'] / 1e9:.2f} GB | {s['load']:.2f} |")
    print("\nEach command's wall time, CPU time (user + system, with its worker processes) and peak "
          "memory (max RSS, MB):\n")
    print("| stage | `stet ingest` | CPU | RSS | `stet import` | CPU | CPU µs an annotation | RSS | "
          "`stet verify` | CPU | RSS | this script's RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in report["stages"]:
        i, m, v = s["ingest"], s["import"], s["verify"]
        print(f"| {s['stage']} | {i['seconds']:.1f} s | {i.get('cpu', 0):.1f} s | {i['rss'] / mb:.0f} | "
              f"{m['seconds']:.1f} s | {m.get('cpu', 0):.1f} s | "
              f"{m.get('cpu', 0) / m['annotations'] * 1e6:.0f} | {m['rss'] / mb:.0f} | "
              f"{v['seconds']:.1f} s | {v.get('cpu', 0):.1f} s | {v['rss'] / mb:.0f} | "
              f"{s['bench_rss'] / mb:.0f} |")
    if report["publishes"]:
        print("\n| after stage | full `stet publish` | peak RSS | snapshot | incremental publish "
              "(1 document, 10 annotations) | peak RSS |")
        print("|---:|---:|---:|---:|---:|---:|")
        for p in report["publishes"]:
            inc = (f"{p['incremental_s']:.1f} s (`{p['incremental_command']}`"
                   f"{'' if p['incremental_matches_archive'] else ', counts differ from the archive!'})"
                   if p.get("incremental_s") is not None else "not available")
            inc_rss = f"{p['incremental_rss'] / mb:.0f} MB" if p.get("incremental_s") is not None else ""
            print(f"| {p['stage']} | {p['full_s']:.1f} s | {p['full_rss'] / mb:.0f} MB | "
                  f"{p['snapshot_size'] / 1e9:.2f} GB | {inc} | {inc_rss} |")
        for p in report["publishes"]:
            serve = p["serve"]
            print(f"\nServing the snapshot after stage {p['stage']} (stet's Datasette and response "
                  f"cache under uvicorn; ready in {serve['ready_s']:.1f} s; server peak RSS "
                  f"{serve['server_rss'] / mb:.0f} MB; load average {serve['load']:.2f}; "
                  f"{CONNECTIONS} connections):\n")
            print("| page | requests/s | median ms | p95 ms |\n|---|---:|---:|---:|")
            for page in serve["pages"]:
                print(f"| {page['page']} (`{page['url']}`) | {page['rps']:.0f} | "
                      f"{page['median_ms']:.1f} | {page['p95_ms']:.1f} |")
    s = summary(report)
    t = TARGETS
    print("\n| measure | figure | target | met |\n|---|---:|---:|---|")
    print(f"| ingest rate, first stage / last stage | {s['ingest_ratio']:.2f}x | <= {t['ingest_ratio']}x "
          f"| {'yes' if s['ingest_ratio'] <= t['ingest_ratio'] else 'no'} |")
    print(f"| import rate, first stage / last stage | {s['import_ratio']:.2f}x | <= {t['import_ratio']}x "
          f"| {'yes' if s['import_ratio'] <= t['import_ratio'] else 'no'} |")
    if "cpu" in report["stages"][0]["ingest"]:
        for key, name in (("ingest_cpu_ratio", "ingest, CPU seconds a file"),
                          ("import_cpu_ratio", "import, CPU seconds an annotation")):
            print(f"| {name}, last stage / first stage | {s[key]:.2f}x | <= 1.2x | "
                  f"{'yes' if s[key] <= 1.2 else 'no'} |")
        cpu_m = s["verify_cpu_per_million"]
        print(f"| `stet verify`, CPU seconds per million revisions: stages, and the later half's "
              f"mean / the earlier half's | {min(cpu_m):.1f}-{max(cpu_m):.1f} s, {trend(cpu_m):.2f}x "
              f"| linear (<= 1.2x) | {'yes' if trend(cpu_m) <= 1.2 else 'no'} |")
    per_m = s["verify_per_million"]
    print(f"| `stet verify`, wall seconds per million revisions: stages, and the later half's mean / "
          f"the earlier half's | {min(per_m):.1f}-{max(per_m):.1f} s, {trend(per_m):.2f}x | linear "
          f"(<= 1.2x) | {'yes' if trend(per_m) <= 1.2 else 'no'} |")
    print(f"| overlap query median, worst stage (SQL) | {s['overlap_median_max']:.3f} ms | "
          f"< {t['overlap_ms']} ms | {'yes' if s['overlap_median_max'] < t['overlap_ms'] else 'no'} |")
    print(f"| overlap via `Archive.annotations`, worst stage | {s['overlap_api_median_max']:.3f} ms | "
          f"< {t['overlap_ms']} ms | {'yes' if s['overlap_api_median_max'] < t['overlap_ms'] else 'no'} |")
    print(f"| as-of query median, worst stage | {s['asof_median_max']:.2f} ms | < {t['asof_ms']} ms | "
          f"{'yes' if s['asof_median_max'] < t['asof_ms'] else 'no'} |")
    for name, (low, high) in s["rss"].items():
        print(f"| `stet {name}` peak RSS over the stages | {low / mb:.0f}-{high / mb:.0f} MB | flat | "
              f"{'yes' if high <= 1.25 * low else 'no'} |")
    if report["publishes"]:
        first, last = report["publishes"][0], report["publishes"][-1]
        print(f"| full `stet publish` peak RSS, after stage {first['stage']} / stage {last['stage']} | "
              f"{first['full_rss'] / mb:,.0f} / {last['full_rss'] / mb:,.0f} MB | flat | "
              f"{'yes' if last['full_rss'] <= 1.25 * first['full_rss'] else 'no'} |")
        pages = {page["page"].split(" (")[0]: page for page in last["serve"]["pages"]}
        for key, label, rps, median in (
                ("document page, random documents", "document page, random documents (first views)",
                 t["document_rps"], t["document_median_ms"]),
                ("document page, one document repeated", "document page, one document repeated",
                 t["document_rps"], t["document_median_ms"]),
                ("search page, random words", "search page, random words (first requests)",
                 None, t["search_median_ms"]),
                ("search page, one word repeated", "search page, one word repeated",
                 None, t["search_median_ms"])):
            page = pages.get(key)
            if page is None:
                continue
            ok = page["median_ms"] < median and (rps is None or page["rps"] >= rps)
            goal = (f">= {rps}/s, " if rps else "") + f"median < {median} ms"
            print(f"| {label}, after stage {last['stage']} | {page['rps']:.0f}/s, median "
                  f"{page['median_ms']:.1f} ms | {goal} | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()
