"""Time stet's object store (issue 15) against `restic backup` to the same S3 server, in one run.

On the UTF-8 corpus of `benchmarks/ingest.py` (20,000 valid UTF-8 text files in 1,000
folders, about 319 MB, in ``benchmarks/work/``: generated, seeded, when missing, and removed
at the end unless ``--keep``; ``--corpus cut``: its corpus cut at arbitrary bytes), with a
real S3 server on 127.0.0.1 (SeaweedFS, ``tests/s3server.py``, given an identity: see
:func:`authenticate`) and the page cache warm, each of ``--runs`` rounds (3) times, into a
fresh archive, bucket or repository each:

- ``embedded``: `stet ingest -s CORPUS --db A.db` (raw bytes in the archive file), then
  `stet verify -s --db A.db`;
- ``store``: `stet store set s3://BUCKET/p1` (untimed) and `stet ingest -s CORPUS` (raw bytes
  to the store: each ingest batch's small files as one pack object, large files as objects
  of their own), then `stet verify -s` (which reads every object back and hashes it); the
  objects written are listed and the S3 requests the ingest made are counted (each boto3
  operation, retries not counted, through a ``sitecustomize`` on ``PYTHONPATH`` that wraps
  ``botocore.endpoint.Endpoint.make_request`` when botocore is imported);
- ``restic``: `restic -r s3:http://127.0.0.1:PORT/BUCKET/restic init` (untimed) and
  `restic backup CORPUS`, then `restic check --read-data`; the objects it wrote are listed.

Each command runs after `sync` and is measured with ``wait4`` (``ingest.timed``): wall time,
CPU time (user and system, its child processes included; the S3 server's own CPU is in
neither) and peak memory. Then:

- ``--sample N`` (2,000; 0: skip): N files of the corpus (chosen seeded) uploaded in-process, once
  as one object per file (``ObjectStore.put_many``, 8 requests in flight) and once as packs of
  up to 1,000 files or 64 MiB (``packs.put``, as an ingest batch writes them), the time of
  each extrapolated to the whole corpus: why packs;
- ``--replica-runs N`` (3; 0: skip): the embedded archive of the last round (or the
  store-backed one: ``--replica-archive store``) is published (`stet publish
  s3://BUCKET/public/`, the snapshot built whole; from a store-backed archive that reads each
  document's raw bytes back with a request of its own, one after another: about 50 ms a
  document here, some 16 minutes for the 20,000 files, hence the default), a read replica
  started (`stet serve --from s3://BUCKET/public/ --check-every 1`), then N times: an
  annotation added (`stet annotate`), `stet publish s3://...` timed, and the time from its
  end until the replica serves the new annotation (``/archive/annotations.json?body=...``
  polled every 50 ms).

Prints Markdown tables (medians of the rounds, with each round's figures) and writes every
figure as JSON to ``--save`` (default ``benchmarks/work/store-results.json``).

Usage: python benchmarks/store.py [--files 20000] [--runs 3] [--sample 2000]
       [--replica-runs 3] [--replica-archive embedded|store] [--keep] [--save FILE]
       python benchmarks/store.py --tables-from FILE
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(1, str(ROOT / "tests"))  # the S3 server helper (after benchmarks/, the script's)

from ingest import STET, describe, ensure, generate, timed  # noqa: E402
from s3server import KEYS, WEED, S3Server  # noqa: E402
from serve import free_port  # noqa: E402

#: Loaded by each stet command through PYTHONPATH: counts the S3 operations the process
#: makes (boto3's, one per request, retries not counted) and the seconds spent in them (summed
#: over threads), and writes them, per process, to $STET_BENCH_REQUESTS/PID.json at exit.
#: botocore is patched only when stet imports it.
COUNTER = '''
import atexit, collections, importlib.abc, importlib.util, json, os, sys, threading, time

_counts = collections.Counter()
_seconds = collections.Counter()
_lock = threading.Lock()


def _forget():
    _counts.clear()
    _seconds.clear()


os.register_at_fork(after_in_child=_forget)


def _patch(module):
    make_request = module.Endpoint.make_request

    def counted(self, operation_model, request_dict):
        start = time.perf_counter()
        try:
            return make_request(self, operation_model, request_dict)
        finally:
            with _lock:
                _counts[operation_model.name] += 1
                _seconds[operation_model.name] += time.perf_counter() - start

    module.Endpoint.make_request = counted


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "botocore.endpoint":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())


@atexit.register
def _write():
    if _counts:
        folder = os.environ["STET_BENCH_REQUESTS"]
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
            json.dump({"counts": _counts, "seconds": _seconds}, out)
'''


def authenticate(server: S3Server, wait: float = 60.0) -> None:
    """Give the server an identity with the key pair of ``server.env()`` (``weed shell``
    ``s3.configure``), and wait until it refuses other keys. Without one, SeaweedFS refuses
    the streaming-signed uploads restic's client sends over plain HTTP ("Signed request
    requires setting up SeaweedFS S3 authentication"); boto3's requests (stet's) are checked
    against it the same way."""
    master = next(a.split("=", 1)[1] for a in server.process.args if a.startswith("-master.port="))
    command = (f"s3.configure -user bench -access_key {KEYS['AWS_ACCESS_KEY_ID']} -secret_key "
               f"{KEYS['AWS_SECRET_ACCESS_KEY']} -actions Read,Write,List,Tagging,Admin -apply\n")
    subprocess.run([WEED, "shell", f"-master=127.0.0.1:{master}"], input=command, text=True,
                   capture_output=True, check=True, timeout=120)
    import boto3
    stranger = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="stranger",
                            aws_secret_access_key="stranger", region_name=KEYS["AWS_REGION"])
    deadline = time.monotonic() + wait
    while True:
        try:
            stranger.list_buckets()
        except Exception:  # refused: the identity is in force
            return
        if time.monotonic() > deadline:
            raise SystemExit("SeaweedFS did not take the identity in time")
        time.sleep(0.2)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", "-public"):
        target = Path(f"{path}{suffix}")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def listing(server: S3Server, bucket: str, prefix: str) -> dict:
    """The objects under ``prefix``: count and bytes, in all and by their first folder."""
    keys = server.keys(bucket, prefix)
    kinds: dict[str, list[int]] = {}
    for key, size in keys.items():
        kind = key[len(prefix):].split("/")[0]
        kinds.setdefault(kind, [0, 0])
        kinds[kind][0] += 1
        kinds[kind][1] += size
    return {"objects": len(keys), "bytes": sum(keys.values()),
            "by_kind": {k: {"objects": v[0], "bytes": v[1]} for k, v in sorted(kinds.items())}}


def requests(folder: Path) -> dict[str, dict[str, float]]:
    """The S3 operations counted (COUNTER) since the folder was emptied, and the seconds spent
    in them, by operation: ``{"PutObject": {"count": 20, "seconds": 5.1}}``; and empty it."""
    total: dict[str, dict[str, float]] = {}
    for path in folder.glob("*.json"):
        found = json.loads(path.read_text())
        for name, count in found["counts"].items():
            entry = total.setdefault(name, {"count": 0, "seconds": 0.0})
            entry["count"] += count
            entry["seconds"] = round(entry["seconds"] + found["seconds"][name], 3)
        path.unlink()
    return total


def figures(result: tuple[float, int, float, float]) -> dict:
    seconds, rss, synced, cpu = result
    return {"seconds": round(seconds, 3), "cpu": round(cpu, 3), "rss_mb": round(rss / 1e6),
            "sync": round(synced, 3)}


class Bench:
    """The S3 server, the environment every command runs in, and each contender's round."""

    def __init__(self, work: Path, corpus: Path, server: S3Server) -> None:
        self.work = work
        self.corpus = corpus
        self.server = server
        self.counted = work / "store-requests"
        self.counted.mkdir(exist_ok=True)
        requests(self.counted)
        site = work / "store-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(COUNTER)
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_CA_BUNDLE", "AWS_PROFILE")}
        self.env = {**env, **server.env(), "STET_USER": "bench", "RESTIC_PASSWORD": "bench",
                    "RESTIC_CACHE_DIR": str(work / "store-restic-cache")}
        self.counting = {**self.env, "STET_BENCH_REQUESTS": str(self.counted),
                         "PYTHONPATH": os.pathsep.join(
                             [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def stet(self, *args: str, env: dict | None = None) -> tuple[float, int, float, float]:
        return timed([str(STET), *args], env=env or self.env, cwd=self.work)

    def quiet(self, *args: str) -> str:
        done = subprocess.run([str(STET), *args], env=self.env, cwd=self.work, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"stet {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def embedded(self) -> dict:
        db = self.work / "store-A.db"
        remove_db(db)
        ingest = self.stet("ingest", "-s", "--db", str(db), str(self.corpus))
        verify = self.stet("verify", "-s", "--db", str(db))
        return {"ingest": figures(ingest), "verify": figures(verify),
                "archive_bytes": db.stat().st_size, "db": str(db)}

    def store(self) -> dict:
        db = self.work / "store-S.db"
        remove_db(db)
        bucket = self.server.bucket()
        url = f"s3://{bucket}/p1"
        self.quiet("store", "set", url, "--db", str(db))
        requests(self.counted)  # the store set's (untimed)
        ingest = self.stet("ingest", "-s", "--db", str(db), str(self.corpus), env=self.counting)
        made = requests(self.counted)
        verify = self.stet("verify", "-s", "--db", str(db), env=self.counting)
        read = requests(self.counted)
        return {"ingest": figures(ingest), "verify": figures(verify), "bucket": bucket, "url": url,
                "written": listing(self.server, bucket, "p1/"), "ingest_requests": made,
                "verify_requests": read, "archive_bytes": db.stat().st_size, "db": str(db)}

    def restic(self) -> dict:
        bucket = self.server.bucket()
        repo = f"s3:{self.server.endpoint}/{bucket}/restic"
        shutil.rmtree(self.work / "store-restic-cache", ignore_errors=True)
        subprocess.run(["restic", "-r", repo, "init", "-q"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        backup = timed(["restic", "-r", repo, "backup", "-q", str(self.corpus)], env=self.env,
                       cwd=self.work)
        check = timed(["restic", "-r", repo, "check", "-q", "--read-data"], env=self.env,
                      cwd=self.work)
        cache = sum(p.stat().st_size for p in (self.work / "store-restic-cache").rglob("*")
                    if p.is_file())
        return {"ingest": figures(backup), "verify": figures(check), "bucket": bucket,
                "written": listing(self.server, bucket, "restic/"), "cache_bytes": cache}

    def sample(self, count: int) -> dict:
        """The first ``count`` files as one object each and as packs, in-process."""
        import hashlib

        from stet.blobs import packs
        from stet.blobs.s3 import ObjectStore
        from stet.ingest.writer import BATCH_BYTES, BATCH_FILES

        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AWS_")})
        os.environ.pop("AWS_CA_BUNDLE", None)
        paths = sorted(p for p in self.corpus.rglob("*") if p.is_file())
        total = len(paths)
        chosen = sorted(random.Random(15).sample(paths, min(count, total)))
        items = [(hashlib.sha256(data).hexdigest(), data) for data in
                 (p.read_bytes() for p in chosen)]
        bucket = self.server.bucket()
        single = ObjectStore(f"s3://{bucket}/single")
        single.put(*items[0])  # the client made and connected before the clock starts
        start = time.perf_counter()
        single.put_many(items[1:])
        one_each = time.perf_counter() - start
        batches: list[list[tuple[str, bytes]]] = [[]]
        size = 0
        for item in items:
            if len(batches[-1]) >= BATCH_FILES or size >= BATCH_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += len(item[1])
        packed = ObjectStore(f"s3://{bucket}/packed")
        start = time.perf_counter()
        for batch in batches:
            packs.put(packed, batch)
        as_packs = time.perf_counter() - start
        return {"files": len(items), "bytes": sum(len(d) for _, d in items), "corpus_files": total,
                "one_each_seconds": round(one_each * len(items) / (len(items) - 1), 3),
                "packs": len(batches), "packs_seconds": round(as_packs, 3),
                "one_each_extrapolated": round(one_each * total / (len(items) - 1), 1),
                "packs_extrapolated": round(as_packs * total / len(items), 1)}

    def replica(self, db: Path, bucket: str, runs: int) -> dict:
        """Publish ``db`` to s3://bucket/public/, start a replica, and time how long after each
        further `stet publish` it serves a new annotation."""
        url = f"s3://{bucket}/public/"
        first = self.stet("publish", "-s", url, "--db", str(db))
        pointer = self.pointer(bucket)
        print(f"  first stet publish {url}: {first[0]:.2f} s, {pointer['size'] / 1e6:,.1f} MB", flush=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cache = self.work / "store-replica-cache"
        shutil.rmtree(cache, ignore_errors=True)
        log = open(self.work / "store-replica.log", "w")
        started = time.monotonic()
        server = subprocess.Popen([str(STET), "serve", "--from", url, "--port", str(port), "--cache",
                                   str(cache), "--check-every", "1"], env=self.env, cwd=self.work,
                                  stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

        def served(body: str | None) -> bool:
            if server.poll() is not None:
                raise SystemExit("the replica exited: "
                                 + (self.work / "store-replica.log").read_text()[-2000:])
            path = "/archive/annotations.json?_shape=array"
            if body is not None:
                path += "&body=" + urllib.parse.quote(body)
            try:
                with urllib.request.urlopen(base + path, timeout=10) as answer:
                    rows = json.loads(answer.read())
            except (OSError, ValueError):
                return False
            return body is None or bool(rows)

        def until(body: str | None, limit: float = 600) -> float:
            start = time.monotonic()
            while not served(body):
                if time.monotonic() - start > limit:
                    raise SystemExit(f"the replica did not serve {body!r} in {limit:.0f} s")
                time.sleep(0.05)
            return time.monotonic()

        try:
            ready = until(None) - started
            rounds = []
            for n in range(runs):
                body = f"replica probe {n} {time.time():.0f}"
                self.quiet("annotate", "1", "--layer", "bench", "--start", "0", "--end", "4",
                           "--body", body, "--db", str(db))
                publish = self.stet("publish", "-s", url, "--db", str(db))
                end = time.monotonic()
                rounds.append({"publish": figures(publish), "until_served": round(until(body) - end, 3),
                               "pointer": self.pointer(bucket)})
                print(f"  replica round {n + 1}: stet publish {publish[0]:.2f} s, served "
                      f"{rounds[-1]['until_served']:.2f} s after it", flush=True)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        return {"archive": str(db), "first_publish": figures(first), "first_pointer": pointer,
                "replica_ready": round(ready, 3), "rounds": rounds,
                "public": listing(self.server, bucket, "public/"), "parts": self.parts(bucket)}

    def parts(self, bucket: str) -> dict:
        """What a new replica's check of the latest snapshot costs, step by step, done here:
        the download of its parts (listed by its manifest), assembled in order; their SHA-256;
        `stet verify` of the file. (A replica that follows downloads only the parts its
        snapshot lacks: its log says how many.)"""
        import hashlib

        latest = self.pointer(bucket)
        client = self.server.client()
        manifest = json.loads(client.get_object(
            Bucket=bucket, Key=f"public/{latest['snapshot']}")["Body"].read())
        path = self.work / "store-replica-probe.db"
        remove_db(path)
        start = time.perf_counter()
        with open(path, "wb") as out:
            for sha in manifest["parts"]:
                out.write(client.get_object(Bucket=bucket,
                                            Key=f"public/parts/{sha[:2]}/{sha}")["Body"].read())
        download = time.perf_counter() - start
        start = time.perf_counter()
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        hashed = time.perf_counter() - start
        assert digest.hexdigest() == latest["sha256"]
        verify = self.stet("verify", "-s", "--db", str(path))
        remove_db(path)
        return {"bytes": latest["size"], "parts": len(manifest["parts"]),
                "download": round(download, 3), "sha256": round(hashed, 3),
                "verify": figures(verify)}

    def pointer(self, bucket: str) -> dict:
        """What public/latest.json says now (the snapshot's name, size, SHA-256)."""
        answer = self.server.client().get_object(Bucket=bucket, Key="public/latest.json")
        return json.loads(answer["Body"].read())


def median(rounds: list[dict], part: str, field: str) -> float:
    return statistics.median(r[part][field] for r in rounds)


def table(results: dict) -> str:
    """The Markdown tables of a results dict (as saved)."""
    rounds = results["rounds"]
    names = {"embedded": "`stet ingest` (embedded)", "store": "`stet ingest` (store-backed)",
             "restic": "`restic backup` (S3)"}
    checks = {"embedded": "`stet verify`", "store": "`stet verify` (reads every object)",
              "restic": "`restic check --read-data`"}
    lines = [f"{results['kind']} corpus: {results['corpus']}. Medians of "
             f"{len(rounds[next(iter(rounds))])} rounds; each round's wall times in brackets.", "",
             "| contender | ingest | CPU | peak RSS | verify | CPU | peak RSS | objects written "
             "| bytes in the store | archive file |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for name, runs in rounds.items():
        each = ", ".join(f"{r['ingest']['seconds']:.1f}" for r in runs)
        each_v = ", ".join(f"{r['verify']['seconds']:.1f}" for r in runs)
        written = runs[-1].get("written")
        objects = f"{written['objects']:,}" if written else "-"
        stored = f"{written['bytes'] / 1e6:,.1f} MB" if written else "-"
        archive = f"{runs[-1]['archive_bytes'] / 1e6:,.1f} MB" if "archive_bytes" in runs[-1] else "-"
        lines.append(
            f"| {names[name]} | {median(runs, 'ingest', 'seconds'):.2f} s ({each}) "
            f"| {median(runs, 'ingest', 'cpu'):.2f} s | {max(r['ingest']['rss_mb'] for r in runs)} MB "
            f"| {checks[name]}: {median(runs, 'verify', 'seconds'):.2f} s ({each_v}) "
            f"| {median(runs, 'verify', 'cpu'):.2f} s | {max(r['verify']['rss_mb'] for r in runs)} MB "
            f"| {objects} | {stored} | {archive} |")
    store = rounds.get("store")
    if store:
        last = store[-1]
        kinds = ", ".join(f"{k}: {v['objects']:,} ({v['bytes'] / 1e6:,.1f} MB)"
                          for k, v in last["written"]["by_kind"].items())

        def ops(part: str) -> str:
            found = [r[part] for r in store]
            return ", ".join(f"{k} {found[-1][k]['count']:,} "
                             f"({statistics.median(f[k]['seconds'] for f in found):.2f} s)"
                             for k in sorted(found[-1]))

        lines += ["", f"stet's objects (last round): {kinds}. S3 requests (last round; in brackets "
                  "the median seconds spent waiting for them): the ingest's "
                  f"{ops('ingest_requests')}; `stet verify`'s {ops('verify_requests')}."]
    restic = rounds.get("restic")
    if restic:
        kinds = ", ".join(f"{k}: {v['objects']:,} ({v['bytes'] / 1e6:,.1f} MB)"
                          for k, v in restic[-1]["written"]["by_kind"].items())
        lines += ["", f"restic's objects (last round): {kinds}; its local cache "
                  f"{restic[-1]['cache_bytes'] / 1e6:,.1f} MB."]
    sample = results.get("sample")
    if sample:
        lines += ["", f"Uploading {sample['files']:,} files chosen at random "
                  f"({sample['bytes'] / 1e6:,.1f} MB) in-process, extrapolated to the corpus's "
                  f"{sample['corpus_files']:,} files:", "",
                  "| upload | sample | extrapolated |", "|---|---:|---:|",
                  f"| one object per file (`put_many`, 8 in flight) | {sample['one_each_seconds']:.2f} s "
                  f"| {sample['one_each_extrapolated']:.1f} s |",
                  f"| packs ({sample['packs']} objects, one after another) | {sample['packs_seconds']:.2f} s "
                  f"| {sample['packs_extrapolated']:.1f} s |"]
    replica = results.get("replica")
    if replica:
        rounds_r = replica["rounds"]
        public = ", ".join(f"{k}: {v['objects']:,} ({v['bytes'] / 1e6:,.1f} MB)"
                           for k, v in replica["public"]["by_kind"].items())
        lines += ["", f"Read replica, on the archive {Path(replica['archive']).name}: the first "
                  f"`stet publish s3://BUCKET/public/` (the snapshot built whole, "
                  f"{replica['first_pointer']['size'] / 1e6:,.1f} MB) took "
                  f"{replica['first_publish']['seconds']:.2f} s "
                  f"(CPU {replica['first_publish']['cpu']:.2f} s); "
                  f"a replica started on it (`stet serve --from ... --check-every 1`) served after "
                  f"{replica['replica_ready']:.2f} s. Under public/ at the end: {public}.", "",
                  "| round | `stet publish s3://...` after one annotation | until the replica "
                  "serves it |", "|---:|---:|---:|"]
        for n, r in enumerate(rounds_r, 1):
            lines.append(f"| {n} | {r['publish']['seconds']:.2f} s | {r['until_served']:.2f} s |")
        if rounds_r:
            lines.append(f"| median | {statistics.median(r['publish']['seconds'] for r in rounds_r):.2f} s "
                         f"| {statistics.median(r['until_served'] for r in rounds_r):.2f} s |")
        parts = replica.get("parts")
        if parts:
            lines += ["", f"The replica's steps, done apart on the last snapshot "
                      f"({parts['bytes'] / 1e6:,.1f} MB): download {parts['download']:.2f} s, SHA-256 "
                      f"{parts['sha256']:.2f} s, `stet verify` {parts['verify']['seconds']:.2f} s."]
    lines += ["", f"Load average {results['load_before']} before, {results['load_after']} after."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", choices=("utf8", "cut"), default="utf8",
                        help="benchmarks/ingest.py's corpus: valid UTF-8, or cut at bytes")
    parser.add_argument("--sample", type=int, default=2_000,
                        help="files uploaded one object each against packs (0: skip)")
    parser.add_argument("--replica-runs", type=int, default=3, help="0: skip the replica")
    parser.add_argument("--replica-archive", choices=("store", "embedded"), default="embedded",
                        help="the last round's archive published for the replica")
    parser.add_argument("--contenders", default="embedded,store,restic")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--keep", action="store_true", help="keep the corpus if generated here")
    parser.add_argument("--save", type=Path, help="JSON results (default WORK/store-results.json)")
    parser.add_argument("--tables-from", type=Path, metavar="JSON", help="print a saved run's tables")
    args = parser.parse_args()
    if args.tables_from:
        print(table(json.loads(args.tables_from.read_text())))
        return

    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    save = args.save or args.work / "store-results.json"
    contenders = [c for c in args.contenders.split(",") if c != "restic" or ensure("restic")]
    corpus = args.work / f"corpus-{args.corpus}-{args.files}"
    made = not corpus.exists()
    if made:
        print(f"generating {corpus} ...", flush=True)
        generate(corpus, args.files, args.corpus)
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": load(),
                     "corpus": describe(corpus), "kind": args.corpus, "files": args.files,
                     "rounds": {c: [] for c in contenders}}
    print(f"corpus: {results['corpus']}\nload average {results['load_before']} before", flush=True)
    subprocess.run(f"find '{corpus}' -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True)
    server = S3Server().start()
    try:
        authenticate(server)
        print(f"S3 server (SeaweedFS) at {server.endpoint}", flush=True)
        bench = Bench(args.work, corpus, server)
        for n in range(args.runs):
            for name in contenders:
                result = getattr(bench, name)()
                result["load"] = load()
                results["rounds"][name].append(result)
                print(f"  round {n + 1} {name:<8} ingest {result['ingest']['seconds']:7.2f} s "
                      f"(CPU {result['ingest']['cpu']:6.2f} s)  verify {result['verify']['seconds']:7.2f} s "
                      f"(CPU {result['verify']['cpu']:6.2f} s)  load {result['load'][0]:.2f}", flush=True)
            save.write_text(json.dumps(results, indent=1))
        if args.sample:
            results["sample"] = bench.sample(args.sample)
            print(f"  sample: {results['sample']}", flush=True)
        if args.replica_runs and results["rounds"].get(args.replica_archive):
            last = results["rounds"][args.replica_archive][-1]
            bucket = last.get("bucket") or server.bucket()
            results["replica"] = bench.replica(Path(last["db"]), bucket, args.replica_runs)
        results["load_after"] = load()
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        save.write_text(json.dumps(results, indent=1))
        print()
        print(table(results))
        print(f"\n(results saved to {save})")
    finally:
        server.stop()
        for name in ("store-A.db", "store-S.db"):
            remove_db(args.work / name)
        for name in ("store-restic-cache", "store-replica-cache", "store-requests", "store-site"):
            shutil.rmtree(args.work / name, ignore_errors=True)
        if made and not args.keep:
            shutil.rmtree(corpus)


if __name__ == "__main__":
    main()
