"""Annotations at scale: import, overlap queries (composite index against an R*Tree) and
as-of queries, on N annotations over D documents (default 1,000,000 over 10,000).

    .venv/bin/python benchmarks/annotations.py                      # the full run
    .venv/bin/python benchmarks/annotations.py --annotations 100000 --documents 1000

Builds an archive in a temporary folder: ingests D generated text files (mixed scripts:
Latin, Persian with ZWNJ, Arabic with harakat, emoji), writes the annotations as W3C JSON
Lines as `stet export --history --format jsonl` would (every tenth annotation revised, every
fiftieth retracted), times `stet import` of that file, then times queries in-process and
prints median and 99th percentile. The R*Tree is built beside the current state only for the
comparison. Prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stet import Archive  # noqa: E402  (imported after the sys.path line above)
from stet import annotations as model  # noqa: E402  (imported after the sys.path line above)
from stet import timeutil  # noqa: E402  (imported after the sys.path line above)
from stet.annotations import w3c  # noqa: E402  (imported after the sys.path line above)

WORDS = ["human", "rights", "حقوق", "بشر", "آزادی‌های", "اساسی", "الإنسان", "لِكُلِّ",
         "شَخْصٍ", "Geneva", "conférence", "👩‍👩‍👧", "🇮🇷", "e\u0301te\u0301", "council"]


def make_documents(folder: Path, count: int, rng: random.Random) -> None:
    for n in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(350, 450))]
        (folder / f"doc{n:06d}.txt").write_text(f"Document {n}\n" + " ".join(words) + "\n",
                                                encoding="utf-8")


def later_revisions(n: int) -> tuple[tuple[int, str], ...]:
    """The revisions after the first of annotation ``n``: one in ten revised, one in fifty
    also retracted (1.12 revisions per annotation on average)."""
    if n % 10:
        return ()
    return ((2, "active"),) if n % 50 else ((2, "active"), (3, "retracted"))


def write_annotations(archive: Archive, path: Path, count: int, rng: random.Random,
                      revisions=later_revisions) -> tuple[int, int, int]:
    """W3C JSON Lines of ``count`` annotations, each followed by ``revisions(n)`` (its later
    revisions, as (number, status)); returns (lines, t0, t1)."""
    docs = archive.conn.execute(
        "SELECT d.id, d.sha256, d.ingested_at, t.sha256, t.text FROM documents d "
        "JOIN texts t ON t.document = d.id ORDER BY d.id").fetchall()
    start_us = timeutil.parse_micros("2026-01-01T00:00:00Z")
    lines = 0
    with open(path, "w", encoding="utf-8") as out:
        for n in range(count):
            doc_id, sha, ingested, text_sha, text = docs[n % len(docs)]
            length = rng.randint(1, 40)
            start = rng.randrange(0, len(text) - length)
            created_us = start_us + n * 10_000
            row = {
                "revision": 1, "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "layer": rng.choice(["entities", "claims", "translation"]), "parent": None,
                "start": start, "end": start + length, "exact": text[start:start + length],
                "prefix": text[max(0, start - 32):start], "suffix": text[start + length:start + length + 32],
                "body": f"note {n}", "motivation": "commenting", "tags": '["bench"]',
                "creator": f"annotator{n % 7}", "author": f"annotator{n % 7}",
                "created": timeutil.from_micros(created_us), "modified": timeutil.from_micros(created_us),
                "status": "active", "reason": None, "source": sha, "ingested_at": ingested,
                "text_sha256": text_sha,
            }
            out.write(w3c._dumps(w3c.to_w3c(row, history=True)) + "\n")
            lines += 1
            for revision, status in revisions(n):
                modified_us = created_us + revision * 86_400_000_000
                row.update(revision=revision, status=status, body=f"note {n} r{revision}",
                           author="reviewer", modified=timeutil.from_micros(modified_us))
                out.write(w3c._dumps(w3c.to_w3c(row, history=True)) + "\n")
                lines += 1
    return lines, start_us, start_us + count * 10_000 + 3 * 86_400_000_000


def timed(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        t0 = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(times: list[float]) -> tuple[str, str]:
    times = sorted(times)
    return f"{statistics.median(times):.3f} ms", f"{times[int(len(times) * 0.99) - 1]:.3f} ms"


SPAN_TRIGGER = """CREATE TEMP TRIGGER span_substr BEFORE INSERT ON main.annotation_revisions
WHEN NEW.start IS NOT NULL BEGIN
    SELECT RAISE(ABORT, 'exact is not text[start:end]') WHERE NOT EXISTS (
        SELECT 1 FROM main.texts WHERE document = NEW.document
        AND substr(text, NEW.start + 1, NEW."end" - NEW.start) = NEW.exact);
END"""


def span_trigger_cost(length: int, rows: int = 20_000) -> tuple[float, float]:
    """Microseconds per revision row of an ``executemany`` into an in-memory archive (the
    real schema and triggers) on one text of ``length`` code points: without, then with a
    trigger comparing exact to substr() of the text."""
    import sqlite3

    from stet import store
    from stet.annotations import INSERT_REVISION
    from stet.hashing import sha256_text

    rng = random.Random(length)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store.migrate(store.sqlite_utils.Database(conn))
    text = ""
    while len(text) < length:
        text += rng.choice(WORDS) + " "
    sha = sha256_text(text)
    conn.execute("INSERT INTO blobs (sha256, size, chunk_count) VALUES (?, 1, 0)", (sha,))
    conn.execute("INSERT INTO documents (id, sha256, filename, media_type, size, ingested_by, "
                 "ingested_at) VALUES (1, ?, 'x', 'text/plain', 1, 'x', 'x')", (sha,))
    conn.execute("INSERT INTO texts (document, sha256, length, text, extractor, extractor_version) "
                 "VALUES (1, ?, ?, ?, 'x', '1')", (sha, len(text), text))
    conn.execute("INSERT INTO layers (name, created_by, created) VALUES ('l', 'x', 'x')")
    batch = []
    for n in range(rows):
        start = rng.randrange(0, len(text) - 20)
        batch.append((n + 1, 1, str(uuid.uuid4()), 1, 1, None, start, start + 10,
                      text[start:start + 10], "", "", "", "commenting", "[]", "a", "a", "t", "t",
                      n, "active", None))
    out = []
    for trigger in (False, True):
        if trigger:
            conn.execute(SPAN_TRIGGER)
        conn.execute("BEGIN")
        t0 = time.perf_counter()
        conn.executemany(INSERT_REVISION, batch)
        out.append((time.perf_counter() - t0) / rows * 1e6)
        conn.execute("ROLLBACK")
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--keep", help="Build the archive here and keep it.")
    args = parser.parse_args()
    rng = random.Random(20261129)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="stet-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "archive.db"
    docs = folder / "docs"
    docs.mkdir(exist_ok=True)
    rows = []

    t0 = time.perf_counter()
    make_documents(docs, args.documents, rng)
    with Archive(db) as archive:
        archive.ingest([docs], by="bench", source="benchmark")
        print(f"ingested {args.documents} documents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        jsonl = folder / "annotations.jsonl"
        lines, first_us, last_us = write_annotations(archive, jsonl, args.annotations, rng)
    size = jsonl.stat().st_size

    env = {**os.environ, "STET_USER": "bench"}
    load = os.getloadavg()[0]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from stet.cli import cli; cli()", "import", str(jsonl),
                    "--db", str(db)],
                   check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the import and its parse worker
    cpu = (after.ru_utime + after.ru_stime) - (used.ru_utime + used.ru_stime)
    rows.append(("`stet import` of W3C JSON Lines (a process, start-up included)",
                 f"{args.annotations / seconds:,.0f} annotations/s ({lines:,} revisions, "
                 f"{size / 1e6:,.0f} MB, {seconds:.1f} s)", "",
                 f"CPU {cpu:.1f} s (both processes); load average {load:.2f} before, "
                 f"{os.getloadavg()[0]:.2f} after"))

    with Archive(db) as archive:
        conn = archive.conn
        count = conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
        assert count == args.annotations, count
        assert archive.verify() == [], "verify found problems"
        lengths = dict(conn.execute("SELECT document, length FROM texts"))
        doc_ids = list(lengths)
        windows = []
        for _ in range(args.queries):
            d = rng.choice(doc_ids)
            n = rng.randrange(0, lengths[d] - 50)
            windows.append((d, n, n + 50))

        overlap_sql = ('SELECT id FROM annotations WHERE document = ? AND start < ? AND "end" > ? '
                       "AND status = 'active'")
        plan = conn.execute("EXPLAIN QUERY PLAN " + overlap_sql, (1, 10, 0)).fetchall()
        index = timed(lambda d, n, m: conn.execute(overlap_sql, (d, m, n)).fetchall(), windows)
        api = timed(lambda d, n, m: list(model.query(conn, document=d, overlapping=(n, m))),
                    windows)

        t0 = time.perf_counter()
        conn.execute("CREATE VIRTUAL TABLE temp.spans USING rtree_i32(id, doc0, doc1, s0, e1)")
        conn.execute('INSERT INTO temp.spans SELECT id, document, document, start, "end" '
                     "FROM annotations WHERE start IS NOT NULL")
        rtree_build = time.perf_counter() - t0
        rtree_sql = ("SELECT a.id FROM temp.spans r JOIN annotations a ON a.id = r.id "
                     "WHERE r.doc0 <= ?1 AND r.doc1 >= ?1 AND r.s0 < ?2 AND r.e1 > ?3 "
                     "AND a.status = 'active'")
        for d, n, m in windows[:200]:  # the same answers
            assert sorted(conn.execute(overlap_sql, (d, m, n)).fetchall()) == \
                sorted(conn.execute(rtree_sql, (d, m, n)).fetchall())
        rtree = timed(lambda d, n, m: conn.execute(rtree_sql, (d, m, n)).fetchall(), windows)

        instants = [(rng.choice(doc_ids), rng.randrange(first_us, last_us)) for _ in range(args.queries)]
        asof_sql = timed(lambda d, at: list(model.query(conn, document=d, at=at)), instants)
        now = timed(lambda d, at: list(model.query(conn, document=d)), instants)

    for length in (3_000, 30_000, 300_000):
        plain, checked = span_trigger_cost(length)
        rows.append((f"insert of a revision row (`executemany`, in memory), text of {length:,} "
                     "code points: schema as is / with a trigger `exact = substr(text, ...)`",
                     f"{plain:.1f} µs / {checked:.1f} µs", "", "per row"))
    rows += [
        ("overlap, current state, SQL, composite index `(document, start, end)`", *summary(index),
         plan[0][-1]),
        ("overlap, current state, SQL, R*Tree (rtree_i32) joined to `annotations`", *summary(rtree),
         f"built in {rtree_build:.1f} s"),
        ("overlap through `annotations.query` (rows as dicts)", *summary(api), ""),
        ("as-of: one document at a random past instant (`query(document, at=)`)", *summary(asof_sql), ""),
        ("current state of one document (`query(document)`)", *summary(now), ""),
    ]
    print(f"\n{args.annotations:,} annotations ({lines:,} revisions) over {args.documents:,} "
          f"documents, {args.queries:,} queries each, median | p99:\n")
    print("| measure | median | p99 | note |\n|---|---|---|---|")
    for name, median, p99, note in rows:
        print(f"| {name} | {median} | {p99} | {note} |")


if __name__ == "__main__":
    main()
