"""Time `stet ingest -s` against `sha256sum` and `git add -A` over the same files, in one run.

Generates (seeded) a corpus of mixed files -- by default 20,000 files, about 300 MB, median
about 5 KB, a few of several MB, text in three scripts and some binary -- then times, with a
warm page cache:

- `sha256sum` over every file (one process, `xargs`),
- `git add -A` of the folder into a fresh repository (hashing, compressing, storing),
- `stet ingest -s` of the folder into a fresh archive (hashing, storing bytes and text,
  extracting, the event chain),

and reports seconds, ratios and stet's peak memory (max RSS).

Usage: python benchmarks/ingest.py [--files 20000] [--work benchmarks/work] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STET = Path(sys.executable).with_name("stet")

WORDS = (
    "human rights declaration article freedom justice peace dignity council resistance "
    "press release geneva conference witness testimony archive record protest prison "
    "حقوق بشر اعلامیه جهانی آزادی عدالت صلح حیثیت\u200cها می\u200cشود "
    "الإعلان العالمي لحقوق الإنسان الحرية العدل السلام الكرامة"
).split()


def generate(folder: Path, files: int, seed: int = 1948) -> tuple[int, int]:
    rng = random.Random(seed)
    pool = " ".join(rng.choice(WORDS) for _ in range(400_000)).encode("utf-8")
    noise = rng.randbytes(4 << 20)
    total = 0
    for i in range(files):
        sub = folder / f"box{i % 100:02d}" / f"folder{(i // 100) % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        size = int(min(rng.lognormvariate(8.52, 1.45), 3_000_000))  # median ~5 KB
        if i % 4000 == 7:
            size = rng.randint(3_000_000, 8_000_000)  # a few of several MB
        header = f"item {i} of the benchmark corpus\n".encode()
        if rng.random() < 0.8:
            start = rng.randrange(len(pool))
            body = pool[start:start + size]
            if len(body) < size:
                body = (body + pool * (size // len(pool) + 1))[:size]
            body = body.decode("utf-8", "ignore").encode("utf-8")  # cut at a character
            name = sub / f"doc{i:05d}.txt"
        else:
            start = rng.randrange(0, len(noise) - 1)
            body = (noise * (size // len(noise) + 2))[start:start + size]
            name = sub / f"blob{i:05d}.bin"
        data = header + body
        name.write_bytes(data)
        total += len(data)
    return files, total


def timed(cmd, **kwargs) -> tuple[float, int]:
    """Wall seconds and peak memory (max RSS, bytes) of one command. Dirty pages are written
    out first, so the disk writes of one contender (git's objects, stet's archive) are not
    flushed in the background while the next one is timed."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--keep", action="store_true", help="keep the generated corpus")
    parser.add_argument("--stet-args", default="", help="extra arguments for stet ingest")
    args = parser.parse_args()

    corpus = args.work / f"corpus-{args.files}"
    if not corpus.exists():
        print(f"generating {args.files} files in {corpus} ...", flush=True)
        generate(corpus, args.files)
    sizes = sorted(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    total = sum(sizes)
    print(f"corpus: {len(sizes)} files, {total / 1e6:.1f} MB, median {sizes[len(sizes) // 2]} B, "
          f"largest {sizes[-1] / 1e6:.1f} MB")

    # Warm the page cache so every contender reads from memory.
    subprocess.run(f"find '{corpus}' -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True)

    results = {}
    results["sha256sum"] = timed(["sh", "-c", f"find '{corpus}' -type f -print0 | xargs -0 sha256sum"])

    git_dir = args.work / "git"
    shutil.rmtree(git_dir, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    results["git add -A"] = timed(["git", f"--git-dir={git_dir}", f"--work-tree={corpus}", "add", "-A"])
    shutil.rmtree(git_dir, ignore_errors=True)

    db = args.work / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    results["stet ingest -s"] = timed(
        [str(STET), "ingest", "-s", "--db", str(db), str(corpus), *args.stet_args.split()]
    )
    db_size = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db}{s}").exists())

    base = results["sha256sum"][0]
    print(f"{'command':<16} {'seconds':>8} {'x sha256sum':>12} {'peak RSS MB':>12}")
    for name, (seconds, rss) in results.items():
        print(f"{name:<16} {seconds:>8.2f} {seconds / base:>12.2f} {rss / 1e6:>12.0f}")
    print(f"stet ingest vs git add -A: "
          f"{results['git add -A'][0] / results['stet ingest -s'][0]:.2f}x faster")
    print(f"archive size: {db_size / 1e6:.1f} MB")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if not args.keep:
        shutil.rmtree(corpus, ignore_errors=True)


if __name__ == "__main__":
    main()
