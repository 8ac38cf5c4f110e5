"""How long ``stet verify`` takes on D documents and N annotations (default 20,000 and
1,000,000), with R revisions and with about twice as many.

    .venv/bin/python benchmarks/verify.py                       # 20,000 documents, 1,000,000 annotations
    .venv/bin/python benchmarks/verify.py --documents 2000 --annotations 100000

Builds two archives in benchmarks/work/verify/ through stet's own paths (``ingest``, then
``import`` of W3C JSON Lines, so every row is recorded by an event): ``base.db``, whose
annotations are revised and retracted as ``benchmarks/annotations.py`` writes them (every
tenth revised, every fiftieth then retracted: 1.12 revisions an annotation), and
``double.db``, the same documents with 2.24 revisions an annotation. Then times
``verify`` on each, in-process and as a ``stet verify`` command (start-up included), and
prints the figures for benchmarks/README.md. ``--keep`` reuses archives already built.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from annotations import make_documents, write_annotations  # noqa: E402
from stet import Archive, timeutil, w3c  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "verify"


def write_doubled(archive: Archive, path: Path, count: int, rng: random.Random) -> int:
    """W3C JSON Lines (``--history`` form) of ``count`` annotations: 3 revisions for about
    a quarter of them, 2 for the rest (2.24 on average, twice the 1.12 of the base)."""
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
                "prefix": text[max(0, start - 32):start],
                "suffix": text[start + length:start + length + 32],
                "body": f"note {n}", "motivation": "commenting", "tags": '["bench"]',
                "creator": f"annotator{n % 7}", "author": f"annotator{n % 7}",
                "created": timeutil.from_micros(created_us),
                "modified": timeutil.from_micros(created_us), "status": "active",
                "reason": None, "source": sha, "ingested_at": ingested, "text_sha256": text_sha,
            }
            for revision in range(1, (3 if n % 25 < 6 else 2) + 1):
                if revision > 1:
                    row.update(revision=revision, body=f"note {n} r{revision}", author="reviewer",
                               modified=timeutil.from_micros(created_us + revision * 86_400_000_000))
                out.write(w3c._dumps(w3c.to_w3c(row, history=True)) + "\n")
                lines += 1
    return lines


def build(db: Path, documents: int, annotations: int, doubled: bool) -> None:
    rng = random.Random(20261201)
    docs = WORK / "docs"
    if not docs.is_dir():
        docs.mkdir(parents=True)
        make_documents(docs, documents, rng)
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with Archive(db) as archive:
        archive.ingest([docs], by="bench", source="benchmark")
        jsonl = WORK / f"{db.stem}.jsonl"
        if doubled:
            write_doubled(archive, jsonl, annotations, rng)
        else:
            write_annotations(archive, jsonl, annotations, rng)
    subprocess.run([sys.executable, "-c", "from stet.cli import cli; cli()", "import", str(jsonl),
                    "--db", str(db), "--by", "bench"], check=True, stdout=subprocess.DEVNULL,
                   cwd=ROOT)
    jsonl.unlink()
    print(f"built {db.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="reuse archives already built")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, doubled in (("base", False), ("double", True)):
        db = WORK / f"{name}.db"
        if not (args.keep and db.exists()):
            build(db, args.documents, args.annotations, doubled)
        with Archive(db, readonly=True) as archive:
            counts = archive.counts()
            t0 = time.perf_counter()
            problems = archive.verify()
            in_process = time.perf_counter() - t0
        assert problems == [], problems[:10]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from stet.cli import cli; cli()", "verify",
                        "--db", str(db)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        command = time.perf_counter() - t0
        rows.append((name, counts, db.stat().st_size, in_process, command))
    print("| archive | documents | annotation revisions | events | size | `verify()` in-process "
          "| `stet verify` |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, counts, size, in_process, command in rows:
        print(f"| {name} | {counts['documents']:,} | {counts['annotation revisions']:,} | "
              f"{counts['events']:,} | {size / 1e6:,.0f} MB | {in_process:.1f} s | {command:.1f} s |")


if __name__ == "__main__":
    main()
