"""Time `stet ingest -s` against `restic backup`, `borg create` and `git add -A`, in one run.

Generates (seeded) two corpora of 20,000 text files each (by default; `--files`), in 1,000
folders, median about 5 KB, a few of several MB, words in English, Persian (with ZWNJ) and
Arabic:

- ``utf8``: every file valid UTF-8 (a one-line ASCII header, then text cut at a character);
- ``cut``: every file a slice of the same text cut at arbitrary bytes, so that a multi-byte
  character is cut at the start or the end of about 40% of them (not valid UTF-8 as a whole).

and one large file of random bytes (1 GiB by default; `--big-mb`). Then, with the page cache
warm, each run times every tool on the same files, one after the other, each into a fresh
repository or archive (its creation not timed), after a `sync` so that one tool's writes are
not flushed while the next is timed:

- `stet ingest -s` of the folder into a fresh archive (hashing, storing bytes and text,
  extracting, the event chain),
- `restic backup` (Debian `restic`) and `borg create` (Debian `borgbackup`): deduplicating
  backup tools that hash and store every file, as stet does; installed with `apt-get` when
  missing (skipped, with a note, when that fails),
- `git add -A` into a fresh bare repository (hashing, compressing, storing),

and, for the large file, `cp` to a new file, stet, restic and borg. After each command the
`sync` that makes its writes durable is timed too (`+ sync`): the large file is compared
with `cp` on the command and its `sync` together. Reported: the median of ``--runs`` runs
(3) of each, each run's figures, peak memory (max RSS from ``wait4``), and the ratios against
issue 14's targets: faster than borg, within 1.3 times restic, the large file within 1.5
times `cp` + `sync`.

Usage: python benchmarks/ingest.py [--files 20000] [--runs 3] [--big-mb 1024] [--keep]
       [--corpora utf8,cut,big] [--tools stet,restic,borg,git] [--stet-args "..."]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
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

#: Issue 14's targets.
TARGET_RESTIC = 1.3  # stet within 1.3 times restic
TARGET_BORG = 1.0  # stet faster than borg
TARGET_CP = 1.5  # a large file within 1.5 times cp + sync

#: The Debian package of each peer that may be missing.
PACKAGES = {"restic": "restic", "borg": "borgbackup"}


def generate(folder: Path, files: int, kind: str, seed: int = 1948) -> None:
    """``files`` text files in ``folder``: ``utf8`` (valid UTF-8) or ``cut`` (cut at bytes)."""
    rng = random.Random(seed)
    pool = " ".join(rng.choice(WORDS) for _ in range(400_000)).encode("utf-8")
    for i in range(files):
        sub = folder / f"box{i % 100:02d}" / f"folder{(i // 100) % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        size = int(min(rng.lognormvariate(8.52, 1.45), 3_000_000))  # median ~5 KB
        if i % 4000 == 7:
            size = rng.randint(3_000_000, 8_000_000)  # a few of several MB
        start = rng.randrange(len(pool))
        body = pool[start:start + size]
        if len(body) < size:
            body = (body + pool * (size // len(pool) + 1))[:size]
        if kind == "utf8":
            header = f"item {i} of the benchmark corpus\n".encode()
            data = header + body.decode("utf-8", "ignore").encode("utf-8")  # cut at a character
        else:
            data = body  # cut wherever the byte offsets fall
        (sub / f"doc{i:05d}.txt").write_bytes(data)


def generate_big(path: Path, mebibytes: int, seed: int = 1948) -> None:
    """Random bytes, different in every MiB (nothing for a deduplicating tool to share)."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        for _ in range(mebibytes):
            out.write(rng.randbytes(1 << 20))


def ensure(tool: str) -> bool:
    """Whether ``tool`` is on the PATH, after installing its Debian package if it was not."""
    if shutil.which(tool):
        return True
    package = PACKAGES.get(tool)
    if package and shutil.which("apt-get") and os.geteuid() == 0:
        print(f"installing {package} (apt-get) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if subprocess.run(["apt-get", "install", "-y", "-q", package], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", package], **quiet)
    if shutil.which(tool):
        return True
    print(f"note: {tool} is not installed and could not be installed "
          f"(apt-get install {package or tool}); skipped", flush=True)
    return False


def timed(cmd, env=None, cwd=None) -> tuple[float, int, float, float]:
    """Wall seconds and peak memory (max RSS, bytes) of one command, the seconds of the
    `sync` after it, and the CPU seconds (user and system) the command and the processes it
    waited for used (on a shared machine, less sensitive to other load than the wall time).
    Dirty pages are written out first, so that the disk writes of one contender are not
    flushed in the background while the next one is timed."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3 if cmd[0] == "restic" else 0):  # restic: 3 = some files unreadable
        raise SystemExit(f"{cmd} failed with exit code {code}: {stderr.decode(errors='replace')[-2000:]}")
    start = time.perf_counter()
    os.sync()
    return (seconds, usage.ru_maxrss * 1024, time.perf_counter() - start,
            usage.ru_utime + usage.ru_stime)


class Tools:
    """Each tool's fresh repository (made untimed) and its timed command, for one input."""

    def __init__(self, work: Path, stet_args: list[str], stet_code: Path | None = None) -> None:
        self.work = work
        self.stet_args = stet_args
        # another copy of stet's code (the tool "stet-ab", for an A/B in the same run): run
        # from it by PYTHONPATH, with the same start-up as the command's
        self.stet_code = stet_code
        self.env = {**os.environ, "RESTIC_PASSWORD": "bench", "BORG_BASE_DIR": str(work / "borg-home"),
                    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "STET_USER": "bench",
                    "RESTIC_CACHE_DIR": str(work / "restic-cache")}

    def clean(self) -> None:
        for name in ("repo", "borg-home", "restic-cache", "copy.bin"):
            path = self.work / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.work / 'bench.db'}{suffix}").unlink(missing_ok=True)

    def run(self, tool: str, source: Path) -> tuple[float, int, float, float]:
        self.clean()
        repo = self.work / "repo"
        env = self.env
        if tool in ("stet", "stet-ab"):
            cmd = [str(STET), "ingest", "-s", "--db", str(self.work / "bench.db"), str(source),
                   *self.stet_args]
            if tool == "stet-ab":
                cmd[:1] = [sys.executable, "-c", "from stet.cli import cli; cli()"]
                env = {**env, "PYTHONPATH": str(self.stet_code)}
        elif tool == "restic":
            subprocess.run(["restic", "-r", str(repo), "init", "-q"], env=self.env, check=True,
                           stdout=subprocess.DEVNULL)
            cmd = ["restic", "-r", str(repo), "backup", "-q", str(source)]
        elif tool == "borg":
            subprocess.run(["borg", "init", "-e", "none", str(repo)], env=self.env, check=True)
            cmd = ["borg", "create", f"{repo}::bench", str(source)]
        elif tool == "git":
            subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
            cmd = ["git", f"--git-dir={repo}", f"--work-tree={source}", "add", "-A"]
        elif tool == "cp":
            cmd = ["cp", str(source), str(self.work / "copy.bin")]
        else:
            raise ValueError(tool)
        return timed(cmd, env=env, cwd=self.work)  # (not the checkout: --stet-code)

    def stet_summary(self) -> str:
        """What the last stet run stored: documents, texts left empty, warnings."""
        conn = sqlite3.connect(self.work / "bench.db")
        try:
            docs, empty, warned, chunks = conn.execute(
                "SELECT count(*), sum(t.length = 0), count(t.warning), "
                "sum(b.storage = 'chunks') FROM documents d JOIN texts t ON t.document = d.id "
                "JOIN blobs b ON b.sha256 = d.sha256").fetchone()
        finally:
            conn.close()
        return (f"stet stored {docs} documents: {empty or 0} with an empty text, {warned} with "
                f"a warning, {chunks or 0} kept as chunks beside their text")


def describe(folder: Path) -> str:
    sizes = sorted(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    invalid = 0
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                invalid += 1
    return (f"{len(sizes)} files, {sum(sizes) / 1e6:.1f} MB, median {sizes[len(sizes) // 2]} B, "
            f"largest {sizes[-1] / 1e6:.1f} MB, {invalid} ({100 * invalid / len(sizes):.0f}%) "
            "not valid UTF-8")


def bench(name: str, source: Path, tools: list[str], runs: int, work: Tools) -> dict[str, list]:
    """Every tool on ``source``, ``runs`` rounds, the tools in turn within each round."""
    if source.is_dir():
        subprocess.run(f"find '{source}' -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True)
    else:
        subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)
    load = os.getloadavg()
    print(f"\n== {name}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before", flush=True)
    results: dict[str, list] = {tool: [] for tool in tools}
    for run in range(runs):
        for tool in tools:
            results[tool].append(work.run(tool, source))
            seconds, rss, synced, cpu = results[tool][-1]
            print(f"  run {run + 1} {tool:<7} {seconds:7.2f} s  + sync {synced:5.2f} s  "
                  f"CPU {cpu:6.2f} s  peak RSS {rss / 1e6:5.0f} MB", flush=True)
            if run == runs - 1 and tool.startswith("stet"):
                print("  " + work.stet_summary())
    load = os.getloadavg()
    print(f"   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after")
    return results


def med(values: list[tuple[float, int, float, float]], with_sync: bool = False) -> float:
    return statistics.median(s + (y if with_sync else 0) for s, _, y, _ in values)


def report(name: str, results: dict[str, list], big: bool) -> None:
    print(f"\n{name}: medians of {len(next(iter(results.values())))} runs")
    print(f"  {'tool':<8} {'seconds':>8} {'+ sync':>8} {'with sync':>10} {'CPU s':>8} {'peak RSS MB':>12}")
    for tool, values in results.items():
        print(f"  {tool:<8} {med(values):>8.2f} {statistics.median(v[2] for v in values):>8.2f} "
              f"{med(values, True):>10.2f} {statistics.median(v[3] for v in values):>8.2f} "
              f"{max(v[1] for v in values) / 1e6:>12.0f}")
    if "stet-ab" in results and "stet" in results:
        print(f"  stet (this code) / stet-ab (--stet-code) = "
              f"{med(results['stet'], big) / med(results['stet-ab'], big):.2f}")
    if "stet" not in results:
        return
    stet = med(results["stet"], big)
    if big and "cp" in results:
        cp = med(results["cp"], True)
        print(f"  stet + sync / cp + sync = {stet / cp:.2f} (target <= {TARGET_CP}: "
              f"{'met' if stet / cp <= TARGET_CP else 'NOT met'})")
    if not big and "restic" in results:
        ratio = stet / med(results["restic"])
        print(f"  stet / restic = {ratio:.2f} (target <= {TARGET_RESTIC}: "
              f"{'met' if ratio <= TARGET_RESTIC else 'NOT met'})")
    if not big and "borg" in results:
        ratio = stet / med(results["borg"])
        print(f"  stet / borg = {ratio:.2f} (target < {TARGET_BORG}: "
              f"{'met' if ratio < TARGET_BORG else 'NOT met'})")
    if not big and "git" in results:
        print(f"  git / stet = {med(results['git']) / stet:.2f} (stet that many times faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=1024, help="the large file, in MiB")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora")
    parser.add_argument("--corpora", default="utf8,cut,big")
    parser.add_argument("--tools", default="stet,restic,borg,git")
    parser.add_argument("--stet-args", default="", help="extra arguments for stet ingest")
    parser.add_argument("--stet-code", type=Path, help="a folder holding another copy of the stet "
                        "package, timed as the tool stet-ab beside stet (A/B in the same run)")
    args = parser.parse_args()

    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    tools = [t for t in args.tools.split(",") if t in ("stet", "cp") or ensure(t)]
    if args.stet_code:
        tools.insert(tools.index("stet") + 1 if "stet" in tools else 0, "stet-ab")
    work = Tools(args.work, args.stet_args.split(), args.stet_code)
    made = []
    try:
        for kind in args.corpora.split(","):
            if kind == "big":
                source = args.work / f"big-{args.big_mb}.bin"
                if not source.exists():
                    print(f"generating {source} ...", flush=True)
                    generate_big(source, args.big_mb)
                    made.append(source)
                name = f"one file of {args.big_mb} MiB (random bytes)"
                results = bench(name, source, ["cp"] + [t for t in tools if t != "git"], args.runs, work)
                report(name, results, big=True)
                continue
            source = args.work / f"corpus-{kind}-{args.files}"
            if not source.exists():
                print(f"generating {source} ...", flush=True)
                generate(source, args.files, kind)
                made.append(source)
            name = f"{kind} corpus: {describe(source)}"
            report(name, bench(name, source, tools, args.runs, work), big=False)
    finally:
        work.clean()
        if not args.keep:
            for path in made:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
