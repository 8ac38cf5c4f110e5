"""The floor under `stet ingest`: what hashing and storing the same files costs with nothing else.

Times, alternating and after `sync` each, over benchmarks/ingest.py's corpus (or --corpus):

- `sha256sum` over every file (the ingest benchmark's yardstick),
- a bare Python script that reads each file, hashes it (SHA-256) and inserts its bytes into a
  one-table SQLite database in WAL mode, 16 KiB pages, 1,000 files a transaction: no text,
  no media type, no events, no integrity triggers, no second process,
- the same script also decoding each file as UTF-8 (what validating a text and counting its
  code points costs in Python).

Usage: python benchmarks/floor.py [--corpus benchmarks/work/corpus-20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bare(root: str, db: str, decode: bool) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(db + suffix).unlink(missing_ok=True)
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        paths += [os.path.join(folder, name) for name in sorted(files)]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA page_size = 16384")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size INTEGER, data BLOB)")
    rows: list[tuple] = []

    def flush() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO blobs VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
        rows.clear()

    for path in paths:
        with open(path, "rb") as stream:
            data = stream.read()
        if decode:
            try:
                len(data.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        rows.append((hashlib.sha256(data).hexdigest(), len(data), data))
        if len(rows) >= 1000:
            flush()
    flush()
    conn.close()


def timed(cmd: list[str]) -> float:
    os.sync()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE / "work" / "corpus-20000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bare", choices=("plain", "decode"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:  # one timed child
        bare(str(args.corpus), args.db, args.bare == "decode")
        return
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus}: no corpus (run benchmarks/ingest.py --keep first)")
    db = str(HERE / "work" / "floor.db")
    script = [sys.executable, __file__, "--corpus", str(args.corpus), "--db", db, "--bare"]
    print(f"{'run':>3} {'sha256sum':>10} {'bare':>8} {'bare+decode':>12} {'bare/sha':>9} "
          f"{'bare+decode/sha':>16}")
    for run in range(1, args.runs + 1):
        sha = timed(["sh", "-c", f"find '{args.corpus}' -type f -print0 | xargs -0 sha256sum"])
        plain = timed(script + ["plain"])
        decoded = timed(script + ["decode"])
        print(f"{run:>3} {sha:>10.2f} {plain:>8.2f} {decoded:>12.2f} {plain / sha:>9.2f} "
              f"{decoded / sha:>16.2f}")
    for suffix in ("", "-wal", "-shm"):
        Path(db + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
