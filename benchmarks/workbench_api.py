"""Workbench API: the latency of creating an annotation through ``POST /-/api/annotations``.

Builds a fresh archive in a temporary directory: one Persian text document (the UDHR in
Farsi from ``../shared/corpus/udhr/udhr_pes_1.txt`` when it is there, else a few KB of
generated Persian with ZWNJ), a layer ``bench``, an annotator account and its bearer token.
Serves it with the workbench (``stet.workbench.make_workbench``) under uvicorn on 127.0.0.1,
in a child process (``--thread``: in a thread of this process instead), and drives it with
one client, sequential requests on one keep-alive connection (``http.client``): each POST
creates an annotation on a different span, signed by the token's account.

    .venv/bin/python benchmarks/workbench_api.py                 # 200 requests of each kind
    .venv/bin/python benchmarks/workbench_api.py --requests 500 --json

Peers measured in the same run, on the same archive:

- ``Archive.annotate`` in-process on an archive kept open (the floor: what the API adds is
  HTTP, the token's check and opening the archive);
- ``Archive.annotate`` in-process on an archive opened and closed for each write (what the
  API does in its thread, without HTTP and the token);
- ``POST /-/api/annotations`` without a token (401: HTTP and Datasette's routing only, the
  archive never opened);
- ``GET /-/api/documents/ID/annotations`` (the document's current annotations as JSON);
- ``stet annotate`` as a command, start-up included (``--cli-runs``, 20 by default; 0 skips).

At the end it checks that the archive holds exactly the annotations written (every API
answer was a 201 with the span asked for, signed by the annotator) and that both
``Archive.verify()`` and ``stet verify`` pass: a benchmark that loses writes is wrong.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stet import Archive, accounts  # noqa: E402  (imported after the sys.path line above)

SHARED_PERSIAN = ROOT.parent / "shared" / "corpus" / "udhr" / "udhr_pes_1.txt"
LAYER = "bench"
ANNOTATOR = "bench-annotator"
PASSWORD = "a long enough benchmark password"
WARM_UP = 5
ZWNJ = "\u200c"

# The child process that serves the workbench (the default): what ``stet.workbench.run``
# does, without its announcements.
SERVE = """
import sys, uvicorn
from stet.workbench import make_workbench
ds = make_workbench(sys.argv[1])
uvicorn.run(ds.app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            lifespan="on")
"""


def persian_text(rng: random.Random) -> tuple[str, str]:
    """The document's text and where it came from."""
    if SHARED_PERSIAN.is_file():
        return SHARED_PERSIAN.read_text(encoding="utf-8"), str(SHARED_PERSIAN)
    words = ["حقوق", "بشر", "آزادی", "عدالت", "صلح", "جهان", "می" + ZWNJ + "شود", "خانواده" + ZWNJ + "ها",
             "اعلامیه", "انسان" + ZWNJ + "ها", "برابری", "کرامت", "نمی" + ZWNJ + "توان", "کشور",
             "قانون", "دادگاه", "آموزش", "کار", "بهره" + ZWNJ + "مند", "هیچ" + ZWNJ + "کس"]
    lines = [" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(80)]
    return "\n".join(lines) + "\n", "generated (80 lines of Persian words with ZWNJ)"


def setup(work: Path, rng: random.Random) -> dict:
    """The archive, its one document, the layer, the annotator and a token."""
    text, origin = persian_text(rng)
    source = work / "udhr_pes.txt"
    source.write_text(text, encoding="utf-8")
    path = work / "archive.db"
    with Archive(path) as archive:
        doc = archive.ingest([source], by="bench")[0]["id"]
        archive.add_layer(LAYER, by="bench")
        archive.add_user(ANNOTATOR, role="annotator", password=PASSWORD, by="bench")
        token = archive.create_token(ANNOTATOR, by="bench")["token"]
        stored = archive.conn.execute("SELECT text FROM texts WHERE document = ?",
                                      (doc,)).fetchone()[0]
        before = archive.conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
    return {"path": path, "doc": doc, "token": token, "text": stored, "origin": origin,
            "source_bytes": len(text.encode("utf-8")), "before": before}


class Spans:
    """Distinct spans (start, end) of the text, so that no write repeats one (stet warns of a
    span already marked in the same layer), kept to the Persian part of the text."""

    def __init__(self, text: str, rng: random.Random) -> None:
        first = text.find("اعلامیه")
        self.low = max(first, 0)
        self.high = len(text)
        self.rng = rng
        self.seen: set[tuple[int, int]] = set()

    def next(self) -> tuple[int, int]:
        while True:
            start = self.rng.randrange(self.low, self.high - 41)
            span = (start, start + self.rng.randint(1, 40))
            if span not in self.seen:
                self.seen.add(span)
                return span


def body(i: int) -> str:
    return f"یادداشت شمارهٔ {i}: بررسی می{ZWNJ}شود"


def summary(name: str, latencies: list[float], wall: float) -> dict:
    ordered = sorted(latencies)

    def rank(q: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {"name": name, "n": len(ordered), "median_ms": statistics.median(ordered) * 1000,
            "p90_ms": rank(0.90), "p99_ms": rank(0.99), "min_ms": ordered[0] * 1000,
            "max_ms": ordered[-1] * 1000, "per_s": len(ordered) / wall}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The workbench on 127.0.0.1: a child process, or (``thread``) a thread of this one."""

    def __init__(self, path: Path, work: Path, thread: bool) -> None:
        self.port = free_port()
        self.process = self.server = self.thread = None
        if thread:
            import uvicorn

            from stet.workbench import make_workbench

            self.server = uvicorn.Server(uvicorn.Config(
                make_workbench(path).app(), host="127.0.0.1", port=self.port,
                log_level="warning", lifespan="on"))
            self.thread = threading.Thread(target=self.server.run, daemon=True)
            self.thread.start()
        else:
            self.log = open(work / "server.log", "wb")  # closed in stop()
            self.process = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(path), str(self.port)], cwd=ROOT,
                stdout=self.log, stderr=subprocess.STDOUT)
        self.work = work
        deadline = time.monotonic() + 60
        while not self.ready():  # waiting for start-up, not timing anything
            if time.monotonic() > deadline or (self.process and self.process.poll() is not None) \
                    or (self.thread and not self.thread.is_alive()):
                self.stop()
                raise SystemExit("the workbench did not start: " + self.errors())
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def errors(self) -> str:
        log = self.work / "server.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()


def request(conn: http.client.HTTPConnection, method: str, url: str, payload: dict | None,
            headers: dict[str, str]) -> tuple[int, bytes]:
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8") if payload is not None else None
    conn.request(method, url, body=data, headers=headers)
    response = conn.getresponse()
    content = response.read()  # the whole answer, so the connection can be used again
    if response.will_close:
        raise SystemExit(f"{method} {url}: the server closed the connection (no keep-alive)")
    return response.status, content


def post_annotations(conn, info: dict, spans: Spans, n: int, made: dict, label: str) -> dict:
    """``n`` POSTs, each a new annotation on a new span; every answer checked."""
    headers = {"Authorization": f"Bearer {info['token']}",
               "Content-Type": "application/json; charset=utf-8"}
    text = info["text"]
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        start, end = spans.next()
        payload = {"document": info["doc"], "layer": LAYER, "start": start, "end": end,
                   "body": body(len(made))}
        t0 = time.perf_counter()
        status, content = request(conn, "POST", "/-/api/annotations", payload, headers)
        latencies.append(time.perf_counter() - t0)
        if status != 201:
            raise SystemExit(f"POST /-/api/annotations: HTTP {status}: {content[:300]!r}")
        record = json.loads(content)
        if (record["start"], record["end"], record["exact"]) != (start, end, text[start:end]) \
                or record["creator"] != ANNOTATOR or record["body"] != payload["body"]:
            raise SystemExit(f"POST {i}: the annotation is not what was asked: {record}")
        made[record["id"]] = (start, end, ANNOTATOR)
    return summary(label, latencies, time.perf_counter() - started)


def refused_posts(conn, info: dict, n: int) -> dict:
    """``n`` POSTs without a token: 401 before the archive is opened (HTTP and routing)."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    payload = {"document": info["doc"], "layer": LAYER, "start": 0, "end": 1, "body": "x"}
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        status, content = request(conn, "POST", "/-/api/annotations", payload, headers)
        latencies.append(time.perf_counter() - t0)
        if status != 401:
            raise SystemExit(f"POST without a token: HTTP {status}: {content[:300]!r}")
    return summary("`POST /-/api/annotations` without a token (401: HTTP floor)", latencies,
                   time.perf_counter() - started)


def get_annotations(conn, info: dict, n: int, expected: int) -> dict:
    url = f"/-/api/documents/{info['doc']}/annotations"
    headers = {"Authorization": f"Bearer {info['token']}"}
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        status, content = request(conn, "GET", url, None, headers)
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise SystemExit(f"GET {url}: HTTP {status}: {content[:300]!r}")
    listed = len(json.loads(content))
    if listed != expected:
        raise SystemExit(f"GET {url} listed {listed} annotations, expected {expected}")
    return summary(f"`GET /-/api/documents/ID/annotations` ({listed} annotations, "
                   f"{len(content) / 1000:.0f} KB of JSON)", latencies, time.perf_counter() - started)


def annotate_in_process(info: dict, spans: Spans, n: int, made: dict, reopen: bool) -> dict:
    """``Archive.annotate`` ``n`` times: on one open archive, or opening one for each write."""
    path, doc, text = info["path"], info["doc"], info["text"]
    latencies = []
    kept = None if reopen else Archive(path, create=False)
    try:
        started = time.perf_counter()
        for _ in range(n):
            start, end = spans.next()
            note = body(len(made))
            t0 = time.perf_counter()
            if reopen:
                with Archive(path, create=False) as archive:
                    record = archive.annotate(doc, layer=LAYER, body=note, by=ANNOTATOR,
                                              start=start, end=end)
            else:
                record = kept.annotate(doc, layer=LAYER, body=note, by=ANNOTATOR, start=start, end=end)
            latencies.append(time.perf_counter() - t0)
            if record["exact"] != text[start:end]:
                raise SystemExit(f"Archive.annotate: the annotation is not what was asked: {record}")
            made[record["id"]] = (start, end, ANNOTATOR)
        wall = time.perf_counter() - started
    finally:
        if kept is not None:
            kept.close()
    name = ("`Archive.annotate`, the archive opened for each write" if reopen else
            "`Archive.annotate` on an open archive (the floor)")
    return summary(name, latencies, wall)


def token_checks(info: dict, n: int) -> dict:
    """The API's first step in-process: open the archive read-only, check the token, close."""
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        with Archive(info["path"], readonly=True) as archive:
            account = accounts.authenticate_token(archive.conn, info["token"])
        latencies.append(time.perf_counter() - t0)
        if account is None or account["name"] != ANNOTATOR:
            raise SystemExit(f"the token did not authenticate {ANNOTATOR}: {account}")
    return summary("the token checked in-process (archive opened read-only, checked, closed)",
                   latencies, time.perf_counter() - started)


def annotate_command(info: dict, spans: Spans, n: int, made: dict) -> dict:
    stet = str(ROOT / ".venv" / "bin" / "stet")
    env = {**os.environ, "STET_USER": ANNOTATOR}
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        start, end = spans.next()
        t0 = time.perf_counter()
        done = subprocess.run(
            [stet, "annotate", str(info["doc"]), "--layer", LAYER, "--start", str(start),
             "--end", str(end), "--body", body(len(made)), "--json", "--db", str(info["path"])],
            capture_output=True, env=env, cwd=info["path"].parent)
        latencies.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"stet annotate failed: {done.stderr.decode()[-500:]}")
        record = json.loads(done.stdout)
        if record["exact"] != info["text"][start:end] or record["creator"] != ANNOTATOR:
            raise SystemExit(f"stet annotate: the annotation is not what was asked: {record}")
        made[record["id"]] = (start, end, ANNOTATOR)
    return summary("`stet annotate` (a process, start-up included)", latencies,
                   time.perf_counter() - started)


def check(info: dict, made: dict) -> dict:
    """The archive holds exactly the annotations made, as made; verify passes both ways."""
    with Archive(info["path"], readonly=True) as archive:
        rows = archive.conn.execute(
            'SELECT id, start, "end", creator FROM annotations WHERE layer = '
            "(SELECT id FROM layers WHERE name = ?)", (LAYER,)).fetchall()
        total = archive.conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
        revisions = archive.counts()["annotation revisions"]
        problems = archive.verify()
    held = {row[0]: tuple(row[1:]) for row in rows}
    if held != made or total != info["before"] + len(made) or revisions != total:
        raise SystemExit(f"the archive holds {len(held)} annotations in {LAYER} ({total} in all, "
                         f"{revisions} revisions); {len(made)} were made")
    if problems:
        raise SystemExit("Archive.verify() found problems:\n" + "\n".join(problems[:20]))
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "stet"), "verify", "-s", "--db",
                           str(info["path"])], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stet verify failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    return {"annotations": total, "revisions": revisions, "stet_verify": done.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests (or writes) of each kind")
    parser.add_argument("--cli-runs", type=int, default=20, help="runs of `stet annotate` (0: none)")
    parser.add_argument("--thread", action="store_true",
                        help="serve in a thread of this process (default: a child process)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="stet-workbench-api-"))
    try:
        info = setup(work, rng)
        spans = Spans(info["text"], rng)
        made: dict[int, tuple[int, int, str]] = {}
        n = args.requests
        load = os.getloadavg()
        server = Server(info["path"], work, args.thread)
        results = []
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            post_annotations(conn, info, spans, WARM_UP, made, "warm-up")  # not reported
            results.append(post_annotations(
                conn, info, spans, n, made, "`POST /-/api/annotations` (201, a new annotation)"))
            results.append(refused_posts(conn, info, n))
            results.append(get_annotations(conn, info, n, info["before"] + len(made)))
            conn.close()
        finally:
            server.stop()
        results.append(annotate_in_process(info, spans, n, made, reopen=False))
        results.append(annotate_in_process(info, spans, n, made, reopen=True))
        results.append(token_checks(info, n))
        if args.cli_runs > 0:
            results.append(annotate_command(info, spans, args.cli_runs, made))
        checked = check(info, made)
        load_after = os.getloadavg()
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    floor = results[3]["median_ms"]
    context = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "server": "thread" if args.thread else "child process", "requests": n,
        "document": {"id": info["doc"], "code_points": len(info["text"]),
                     "bytes": info["source_bytes"], "source": info["origin"]},
        "load_average_before": load[:2], "load_average_after": load_after[:2],
        "checked": checked, "results": results,
    }
    if args.json:
        print(json.dumps(context, ensure_ascii=False, indent=2))
        return
    print(f"{context['when']}, {context['cpus']} CPUs, workbench in a {context['server']} "
          f"(uvicorn, 127.0.0.1), one client, sequential, keep-alive; load average "
          f"{load[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    print(f"document {info['doc']}: {len(info['text']):,} code points of Persian "
          f"({info['source_bytes']:,} bytes, {info['origin']})\n")
    print("| measure | n | median ms | p90 ms | p99 ms | min ms | max ms | per second | of the floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['name']} | {r['n']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | {r['per_s']:.0f} | "
              f"{r['median_ms'] / floor:.1f} |")
    post, http_floor, reopened, token = (results[i]["median_ms"] for i in (0, 1, 4, 5))
    print(f"\nMedians: the API adds {post - floor:.2f} ms to a write on an open archive: HTTP and "
          f"routing (the 401) {http_floor:.2f} ms, the token's check on an archive opened for it "
          f"{token:.2f} ms, opening the archive again for the write {reopened - floor:.2f} ms, "
          f"left (threads, JSON, Datasette; medians do not add exactly) "
          f"{post - http_floor - token - reopened:.2f} ms.")
    print(f"Checked: {checked['annotations']} annotations ({checked['revisions']} revisions), "
          f"each as written; Archive.verify() and `stet verify` pass ({checked['stet_verify']}).")


if __name__ == "__main__":
    main()
