"""Publishing what changed: a full build of the public snapshot against bringing it up to date
after 1 document and 10 annotations are added (issue 14, item 1; target under 2%).

Uses the archive of ``benchmarks/serve.py`` (20,000 documents, 1,000,000 annotations): a copy
of ``benchmarks/work/serve/archive.db`` when there is one, else one built here (``--documents``
and ``--annotations`` choose a smaller scale). Everything is written in
``benchmarks/work/publish/``. Each round adds 1 document and 10 annotations (5 on it, 5 on
documents already published) through the facade, with their events, then times, alternating:

- ``stet publish OUT`` as it runs (``Archive.publish``): OUT, the earlier snapshot, brought up
  to date in a copy, its SHA-256 computed and recorded in the archive's publish event;
- ``stet publish FULL --full``: the snapshot built whole, into another file.

``--serve`` times the cache of ``stet serve`` too (``open_snapshot``: a full build once, then
an update per round; it needs no SHA-256). ``--check`` compares the last update with the last
full build table by table (SQL ``EXCEPT`` both ways) and runs ``verify`` on both.

    .venv/bin/python benchmarks/publish.py --rounds 3 --check
    .venv/bin/python benchmarks/publish.py --documents 5000 --annotations 250000 --rebuild
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import serve as serve_benchmark  # noqa: E402  (benchmarks/serve.py: the same archive)

import stet.publish  # noqa: E402  (imported after the sys.path line above)
from stet import Archive  # noqa: E402
from stet.snapshots import open_snapshot, snapshot_folder  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "publish"
SERVE_ARCHIVE = ROOT / "benchmarks" / "work" / "serve" / "archive.db"
TABLES = ("blobs", "blob_chunks", "documents", "texts", "layers", "annotations",
          "annotation_revisions", "annotation_anchoring")


class Timers:
    """Time spent in the copy of the earlier snapshot and in hashing the new one (in a thread
    of its own, while the file is flushed to disk and moved into place)."""

    def __init__(self) -> None:
        self.spent = {"copy": 0.0, "sha256": 0.0}
        for name, attribute in (("copy", "_copy_file"), ("sha256", "_stream_hash")):
            setattr(stet.publish, attribute, self._timed(name, getattr(stet.publish, attribute)))

    def _timed(self, name, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - started
        return timed

    def reset(self) -> dict[str, float]:
        spent, self.spent = self.spent, {"copy": 0.0, "sha256": 0.0}
        return spent


def prepare(path: Path, documents: int, annotations: int, rebuild: bool) -> None:
    if path.exists() and not rebuild:
        return
    for p in WORK.glob("archive.db*"):
        p.unlink()
    if (documents, annotations) == (serve_benchmark.DOCUMENTS, serve_benchmark.ANNOTATIONS) \
            and SERVE_ARCHIVE.exists():
        shutil.copyfile(SERVE_ARCHIVE, path)  # quiescent: its -wal, if any, is empty
        print(f"copied {SERVE_ARCHIVE.relative_to(ROOT)}")
        return
    serve_benchmark.DOCUMENTS, serve_benchmark.ANNOTATIONS = documents, annotations
    serve_benchmark.BIG_DOC_ANNOTATIONS = min(serve_benchmark.BIG_DOC_ANNOTATIONS, annotations)
    serve_benchmark.WORK = WORK
    serve_benchmark.build(path)


def add_one(archive: Archive, rng: random.Random, words: list[str], round_: int) -> None:
    """1 document and 10 annotations: 5 on it, 5 on documents published already."""
    folder = WORK / "new"
    folder.mkdir(exist_ok=True)
    body = " ".join(rng.choice(words) for _ in range(350))
    path = folder / f"added-{round_}-{rng.getrandbits(32):08x}.txt"
    path.write_text(f"Added document {round_}\n{body}\n", encoding="utf-8")
    doc = archive.ingest([path], by="bench", source="added")[0]["id"]
    last = archive.conn.execute("SELECT max(id) FROM documents WHERE id < ?", (doc,)).fetchone()[0]
    targets = [doc] * 5 + [rng.randint(1, last) for _ in range(5)]
    for n, target in enumerate(targets):
        text = archive.text(target)
        start = rng.randrange(0, len(text) - 40)
        archive.annotate(target, layer=rng.choice(serve_benchmark.LAYERS), start=start,
                         end=start + rng.randint(3, 30), body=f"added note {round_}.{n}",
                         by=rng.choice(serve_benchmark.AUTHORS))


def compare(updated: Path, full: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(f"file:{updated}?mode=ro", uri=True)
    conn.execute("ATTACH DATABASE ? AS full", (f"file:{full}?mode=ro",))
    for table in TABLES:
        differ = conn.execute(
            f"SELECT (SELECT count(*) FROM (SELECT rowid, * FROM main.{table} EXCEPT "
            f"SELECT rowid, * FROM full.{table})) + (SELECT count(*) FROM (SELECT rowid, * "
            f"FROM full.{table} EXCEPT SELECT rowid, * FROM main.{table}))").fetchone()[0]
        rows = conn.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0]
        print(f"  {table}: {rows} rows, {differ} differ")
        assert differ == 0, table
    copies = ("SELECT time, actor, action, subject, document, details FROM {}.events "
              "WHERE NOT (document IS NULL AND action IN ('publish', 'publish-update')) "
              "ORDER BY seq")
    assert conn.execute(copies.format("main")).fetchall() == \
        conn.execute(copies.format("full")).fetchall()
    print("  events: the copies of the archive's events alike")
    conn.close()
    # This archive's layers and annotations were written with SQL, without their events, so
    # verify reports each of them, on both snapshots alike.
    found = []
    for path in (updated, full):
        started = time.perf_counter()
        with Archive(path, readonly=True) as snapshot:
            found.append(snapshot.verify())
        print(f"  verify {path.name}: {len(found[-1])} problems "
              f"({time.perf_counter() - started:.1f} s)")
    assert found[0] == found[1]
    print("  verify: the same problems on both")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of add, update, full build")
    parser.add_argument("--documents", type=int, default=serve_benchmark.DOCUMENTS)
    parser.add_argument("--annotations", type=int, default=serve_benchmark.ANNOTATIONS)
    parser.add_argument("--rebuild", action="store_true", help="make the archive again")
    parser.add_argument("--serve", action="store_true", help="time the serve cache too")
    parser.add_argument("--check", action="store_true",
                        help="compare the last update with the last full build; verify both")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "archive.db"
    prepare(path, args.documents, args.annotations, args.rebuild)
    site = WORK / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    shutil.rmtree(snapshot_folder(path), ignore_errors=True)
    out, full = site / "archive.db", site / "full.db"
    rng = random.Random(20261201)
    words = serve_benchmark.vocabulary()
    timers = Timers()
    with Archive(path) as archive:
        counts = archive.counts()
        print(f"archive: {counts}")
        started = time.perf_counter()
        first = archive.publish(out)
        print(f"first snapshot (full) in {time.perf_counter() - started:.1f} s, "
              f"{out.stat().st_size / 1e6:.0f} MB")
        timers.reset()
        if args.serve:
            started = time.perf_counter()
            open_snapshot(path).close()
            print(f"serve cache, first snapshot (full) in {time.perf_counter() - started:.1f} s")
            timers.reset()
        results = []
        for round_ in range(1, args.rounds + 1):
            add_one(archive, rng, words, round_)
            started = time.perf_counter()
            updated = archive.publish(out)
            update_s = time.perf_counter() - started
            assert updated["build"] == "incremental", updated["reason"]
            spent = timers.reset()
            serve_s = None
            if args.serve:
                started = time.perf_counter()
                with open_snapshot(path) as snapshot:
                    serve_s = time.perf_counter() - started
                    assert snapshot.built["build"] == "incremental", snapshot.built["reason"]
                timers.reset()
            started = time.perf_counter()
            whole = archive.publish(full, force=True, full=True)
            full_s = time.perf_counter() - started
            assert whole["build"] == "full"
            timers.reset()
            results.append((update_s, spent, serve_s, full_s))
            print(f"round {round_} (load average {os.getloadavg()[0]:.1f}): update "
                  f"{update_s:.2f} s (copy {spent['copy']:.2f}, then sha256 "
                  f"{spent['sha256']:.2f} beside the flush and the rename)"
                  + (f", serve cache update {serve_s:.2f} s" if serve_s is not None else "")
                  + f"; full build {full_s:.1f} s; update/full {update_s / full_s:.2%}"
                  + (f", serve/full {serve_s / full_s:.2%}" if serve_s is not None else ""))
    ratios = [u / f for u, _, _, f in results]
    print(f"\nmedian update/full over {len(results)} rounds: {statistics.median(ratios):.2%} "
          f"(update median {statistics.median(r[0] for r in results):.2f} s, full median "
          f"{statistics.median(r[3] for r in results):.1f} s)")
    if args.serve:
        print(f"median serve-cache update/full: "
              f"{statistics.median(s / f for _, _, s, f in results):.2%}")
    if args.check:
        # the archive's head has moved by the facade's publish events: both once more, alike
        stet.publish.publish(path, out)
        stet.publish.publish(path, full, full=True)
        compare(out, full)
    del first


if __name__ == "__main__":
    main()
