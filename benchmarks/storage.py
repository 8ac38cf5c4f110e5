"""Where to keep raw bytes: in the SQLite file (chunks) or as content-addressed files beside it.

Stores the same corpus both ways, hashing each file, and times them in one run:

- `sqlite`: one archive file, bytes in `blob_chunks`-like rows, batched transactions of
  1,000 files, WAL, synchronous=NORMAL, 16 KiB pages (what stet does);
- `files`: one file per blob under `objects/ab/cdef...` (as git does), written with a
  temporary name and renamed, then one `sync` at the end.

Usage: python benchmarks/storage.py [--corpus benchmarks/work/corpus-20000]
(generate the corpus first with `python benchmarks/ingest.py --keep`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def files_of(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file())


def to_sqlite(paths: list[Path], db: Path) -> float:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    start = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA page_size = 16384")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE blob_chunks (id INTEGER PRIMARY KEY, sha256 TEXT, seq INT, data BLOB, "
                 "UNIQUE (sha256, seq))")
    for i in range(0, len(paths), 1000):
        rows = []
        for path in paths[i:i + 1000]:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            rows.extend((sha, n, data[o:o + (1 << 20)]) for n, o in enumerate(range(0, len(data), 1 << 20)))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO blob_chunks (sha256, seq, data) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.sync()
    return time.perf_counter() - start


def to_files(paths: list[Path], store: Path) -> float:
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        target = store / sha[:2] / sha[2:]
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    os.sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE / "work" / "corpus-20000")
    args = parser.parse_args()
    paths = files_of(args.corpus)
    total = sum(p.stat().st_size for p in paths)
    for p in paths:  # warm the page cache
        p.read_bytes()
    work = HERE / "work"
    seconds_db = to_sqlite(paths, work / "storage.db")
    seconds_files = to_files(paths, work / "objects")
    inodes = sum(1 for _ in (work / "objects").rglob("*"))
    print(f"{len(paths)} files, {total / 1e6:.1f} MB")
    size = (work / "storage.db").stat().st_size
    print(f"sqlite chunks: {seconds_db:.2f} s, one file of {size / 1e6:.1f} MB")
    print(f"files beside:  {seconds_files:.2f} s, {inodes} files and folders")
    print(f"ratio files/sqlite: {seconds_files / seconds_db:.2f}")
    (work / "storage.db").unlink()
    shutil.rmtree(work / "objects")


if __name__ == "__main__":
    main()
