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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from annotations import make_documents, write_annotations  # noqa: E402  (imported after the sys.path line above)
from stet import Archive  # noqa: E402  (imported after the sys.path line above)

WORK = ROOT / "benchmarks" / "work" / "verify"


def doubled_revisions(n: int) -> tuple[tuple[int, str], ...]:
    """Twice the base's revisions: 3 for about a quarter of the annotations, 2 for the rest
    (2.24 per annotation on average, against 1.12)."""
    return ((2, "active"), (3, "active")) if n % 25 < 6 else ((2, "active"),)


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
        write_annotations(archive, jsonl, annotations, rng,
                          **({"revisions": doubled_revisions} if doubled else {}))
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
