"""Time `stet ingest -s` in one process against worker processes, over the same files, in one run.

Generates (seeded) a corpus of documents whose extraction costs more than storing them --
PDFs of a few pages, DOCX files with a table, HTML pages and emails with an attachment, in
English and Arabic -- then ingests it into fresh archives with ``STET_WORKERS=0`` (no pool)
and with the default (one worker per CPU), alternating, and reports the best time of each,
the gain, and peak memory. Pass ``--corpus DIR`` to time another folder the same way
(benchmarks/ingest.py's corpus, say).

Usage: python benchmarks/parallel.py [--files 600] [--runs 3] [--work benchmarks/work]
           [--corpus DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

HERE = Path(__file__).resolve().parent
STET = Path(sys.executable).with_name("stet")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = ("human rights declaration article freedom justice peace dignity council witness "
         "يولد جميع الناس أحرارا متساوين في الكرامة والحقوق").split()


def generate(folder: Path, files: int, seed: int = 1948) -> None:
    import docx
    from fpdf import FPDF

    rng = random.Random(seed)

    def line(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    for i in range(files):
        sub = folder / f"box{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        kind = i % 4
        if kind == 0:
            pdf = FPDF()
            pdf.add_font("dejavu", fname=FONT)
            pdf.set_font("dejavu", size=10)
            for _ in range(4):
                pdf.add_page()
                for _ in range(30):
                    pdf.cell(0, 6, line(12), new_x="LMARGIN", new_y="NEXT")
            pdf.output(str(sub / f"doc{i:05d}.pdf"))
        elif kind == 1:
            document = docx.Document()
            for _ in range(60):
                document.add_paragraph(line(15))
            table = document.add_table(rows=10, cols=3)
            for r in range(10):
                for c in range(3):
                    table.cell(r, c).text = line(2)
            document.save(str(sub / f"doc{i:05d}.docx"))
        elif kind == 2:
            body = "".join(f"<p>{line(20)}</p>" for _ in range(200))
            (sub / f"doc{i:05d}.html").write_text(
                f"<!doctype html><html><head><title>{i}</title></head><body>{body}</body></html>",
                encoding="utf-8")
        else:
            message = EmailMessage()
            message["From"], message["To"] = "press@example.org", "desk@example.org"
            message["Subject"] = line(4)
            message.set_content("\n".join(line(14) for _ in range(40)))
            message.add_attachment(rng.randbytes(20_000), maintype="application",
                                   subtype="octet-stream", filename=f"scan{i}.bin")
            (sub / f"doc{i:05d}.eml").write_bytes(message.as_bytes())


def timed(corpus: Path, db: Path, workers: str | None) -> tuple[float, int]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = dict(os.environ)
    env.pop("STET_WORKERS", None)
    if workers is not None:
        env["STET_WORKERS"] = workers
    start = time.perf_counter()
    proc = subprocess.Popen([str(STET), "ingest", "-s", "--db", str(db), str(corpus)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stet ingest failed ({workers=})")
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--corpus", type=Path, help="time this folder instead of generating one")
    parser.add_argument("--workers", default=None,
                        help="worker processes for the pool runs (default: stet's own choice)")
    parser.add_argument("--keep", action="store_true", help="keep the generated corpus")
    args = parser.parse_args()

    corpus = args.corpus or args.work / f"mixed-{args.files}"
    if not corpus.exists():
        print(f"generating {args.files} files in {corpus} ...", flush=True)
        generate(corpus, args.files)
    sizes = [p.stat().st_size for p in corpus.rglob("*") if p.is_file()]
    print(f"corpus: {len(sizes)} files, {sum(sizes) / 1e6:.1f} MB; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    subprocess.run(f"find '{corpus}' -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True)

    db = args.work / "parallel.db"
    best = {"in one process": (float("inf"), 0), "worker processes": (float("inf"), 0)}
    every: dict[str, list[float]] = {name: [] for name in best}
    for _ in range(args.runs):  # alternate, keep the best of each: others' load is noise
        for name, workers in (("in one process", "0"), ("worker processes", args.workers)):
            seconds, rss = timed(corpus, db, workers)
            every[name].append(seconds)
            if seconds < best[name][0]:
                best[name] = (seconds, rss)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    base = best["in one process"][0]
    print(f"{'stet ingest -s':<18} {'best s':>8} {'median s':>9} {'x one process':>14} "
          f"{'peak RSS MB':>12}")
    for name, (seconds, rss) in best.items():
        print(f"{name:<18} {seconds:>8.2f} {statistics.median(every[name]):>9.2f} "
              f"{seconds / base:>14.2f} {rss / 1e6:>12.0f}")
    print("every run:", {name: [round(t, 2) for t in times] for name, times in every.items()})
    print(f"gain: {base / best['worker processes'][0]:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not args.keep and not args.corpus:
        shutil.rmtree(corpus, ignore_errors=True)


if __name__ == "__main__":
    main()
