"""Files of any size: hashing and storing stream in blocks, so memory stays flat.

The peak memory (maximum resident set size) of a real ``stet ingest`` is measured in a
child process. The file here is 256 MiB to keep the suite fast; the 1 GiB figure is measured
by hand the same way (``python tests/test_large_files.py 1024``) and reported in
docs/formats.md.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys

import pytest

from stet.extract import EXTRACT_LIMIT

LIMIT_MB = 300

#: Runs ``stet ingest`` in a grandchild and prints its peak RSS, so that nothing else this
#: test process ever started counts towards the figure.
MEASURE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
sys.stderr.buffer.write(proc.stderr)
sys.stdout.buffer.write(proc.stdout)
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(proc.returncode)
"""


def make_file(path, size_mb: int) -> str:
    """Text-like bytes (so the sniffer reads it as text and the extraction bound applies),
    different in every MiB so nothing compresses or repeats; returns the SHA-256."""
    digest = hashlib.sha256()
    seed = os.urandom(16).hex().encode()
    with open(path, "wb") as out:
        for i in range(size_mb):
            line = (hashlib.sha256(seed + str(i).encode()).hexdigest() + "\n").encode()
            block = line * (1024 * 1024 // len(line)) + b"x" * (1024 * 1024 % len(line))
            out.write(block)
            digest.update(block)
    return digest.hexdigest()


def measure_ingest(path, db) -> tuple[int, dict]:
    """(peak RSS in KiB, the ingest record) of ``stet ingest PATH --json -s``."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-c",
               "from stet.cli import cli; cli()", "ingest", str(path), "--json", "-s", "--db", str(db)]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "STET_USER": "t"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("MAXRSS_KB ")
    return int(lines[-1].split()[1]), json.loads(lines[0])


def test_large_file_memory_stays_flat(tmp_path):
    path = tmp_path / "large.log"
    sha = make_file(path, 256)
    peak_kb, record = measure_ingest(path, tmp_path / "a.db")
    assert peak_kb < LIMIT_MB * 1024, f"peak RSS {peak_kb // 1024} MiB"
    assert record["status"] == "new" and record["sha256"] == sha
    assert record["size"] == 256 * 1024 * 1024 and record["media_type"] == "text/plain"

    from stet import Archive

    with Archive(tmp_path / "a.db") as archive:
        doc = archive.document(record["id"])
        assert doc["text_length"] == 0
        assert doc["warning"] == (f"not extracted: {256 * 1024 * 1024} bytes is over the "
                                  f"{EXTRACT_LIMIT}-byte extraction limit")
        digest = hashlib.sha256()
        for block in archive.raw(record["id"]):
            digest.update(block)
        assert digest.hexdigest() == sha
        assert archive.verify() == []


if __name__ == "__main__":  # by hand: python tests/test_large_files.py 1024
    import tempfile

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory() as tmp:
        make_file(os.path.join(tmp, "large.log"), size)
        peak, _ = measure_ingest(os.path.join(tmp, "large.log"), os.path.join(tmp, "a.db"))
        print(f"{size} MiB file: peak RSS {peak / 1024:.0f} MiB")


# -- many files: worker processes, stable order, progress -----------------------------------


def make_many(root, count: int = 150):
    """Small text files, a binary, an email with an attachment, and a dangling link."""
    from email.message import EmailMessage

    for i in range(count):
        folder = root / f"box{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc{i:04d}.txt").write_text(f"سند شماره {i}\n" * (i % 13 + 1), encoding="utf-8")
    (root / "box0" / "copy.txt").write_text("سند شماره 0\n", encoding="utf-8")  # a duplicate
    (root / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "s"
    message.set_content("body")
    message.add_attachment(b"attached", maintype="application", subtype="octet-stream",
                           filename="a.bin")
    (root / "mail.eml").write_bytes(message.as_bytes())
    os.symlink(root / "nowhere", root / "dangling")


def test_parallel_ingest_matches_sequential(tmp_path, monkeypatch):
    from stet import Archive
    from stet import ingest as ingest_module

    make_many(tmp_path / "src")
    used = []
    original = ingest_module._workers

    def spy(entries, sizes, configured=None):
        used.append(original(entries, sizes, configured))
        return used[-1]

    monkeypatch.setattr(ingest_module, "_workers", spy)
    from stet.ingest import pool, readahead

    monkeypatch.setattr(pool, "TASK_FILES", 16)  # many tasks, several in flight
    monkeypatch.setattr(pool, "TASK_BYTES", 64 * 1024)

    monkeypatch.setattr(readahead, "SLOT_FILES", 16)  # many regions, each reused
    monkeypatch.setattr(readahead, "SLOTS", 2)
    monkeypatch.setattr(readahead, "SLOT_BYTES", 1 << 20)  # blob.bin (3 MiB) travels pickled
    monkeypatch.setattr(readahead, "available", lambda: True)
    ahead = []
    monkeypatch.setattr(readahead.ReadAhead, "__iter__",
                        lambda self, real=readahead.ReadAhead.__iter__: ahead.append(1) or real(self))
    results = {}
    # in-process, then two worker processes, then one read-ahead worker ("a": the default for
    # this folder, which has too few PDF, DOCX, HTML or email files for a pool)
    for workers in ("0", "2", "a"):
        with Archive(tmp_path / f"w{workers}.db") as archive:
            ticks = []

            @contextlib.contextmanager
            def progress(files, nbytes, ticks=ticks):
                ticks.append((files, nbytes))
                yield ticks.append

            results[workers] = archive.ingest([tmp_path / "src"], by="t", progress=progress,
                                              workers=None if workers == "a" else int(workers))
            files, nbytes = ticks[0]
            assert len(ticks) - 1 == files == 154 and sum(ticks[1:]) == nbytes
            assert archive.verify() == []
    assert used == [0, 2, 0] and ahead == [1]
    strip = [[{k: v for k, v in r.items() if k != "warning"} for r in results[w]] for w in "02a"]
    assert strip[0] == strip[1] == strip[2]
    statuses = [r["status"] for r in results["2"]]
    assert statuses.count("error") == 1 and statuses.count("duplicate") == 1
    assert any(r["path"].endswith("mail.eml#a.bin") for r in results["2"])
    with (Archive(tmp_path / "w0.db") as one, Archive(tmp_path / "w2.db") as two,
          Archive(tmp_path / "wa.db") as three):
        def rows(archive):
            return [{k: v for k, v in d.items() if k != "ingested_at"} for d in archive.documents()]

        assert rows(one) == rows(two) == rows(three)
        for d in one.documents():
            assert one.text(d["id"]) == two.text(d["id"]) == three.text(d["id"])
            assert b"".join(one.raw(d["id"])) == b"".join(three.raw(d["id"]))
        assert one.text(2) == "سند شماره 0\n" * 1


def test_pool_only_when_it_pays(tmp_path, monkeypatch):
    from stet.ingest import Entry, _workers

    monkeypatch.delenv("STET_WORKERS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    texts = [Entry(f"{i}.txt") for i in range(5000)]
    assert _workers(texts, [1000] * 5000) == 0  # writer-bound: in-process
    pdfs = [Entry(f"{i}.PDF") for i in range(20)] + [Entry("x.docx", error="gone")]
    assert _workers(pdfs, [10**6] * 21) == (min(cpus, 8) if cpus > 1 else 0)
    assert _workers(pdfs[:3], [10**6] * 3) == 0
    assert _workers(texts, [1000] * 5000, 3) == 3  # as asked (stet ingest --workers 3)


def test_progress_bar_shows_files_bytes_and_rate_on_a_terminal(tmp_path, monkeypatch, run):
    import types

    import stet.cli.common as common

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    fake = types.SimpleNamespace(stdout=Terminal(), stderr=Terminal())
    monkeypatch.setattr(common, "sys", fake)
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "b.txt").write_text("world!", encoding="utf-8")
    out = run("ingest", tmp_path / "a.txt", tmp_path / "b.txt")
    assert out.exit_code == 0
    shown = fake.stderr.getvalue()
    assert "Ingesting" in shown and "2/2 files, 0.0/0.0 MB" in shown and "MB/s" in shown
    # silent with -s, and when stdout is not a terminal (CliRunner's is not)
    monkeypatch.setattr(common, "sys", types.SimpleNamespace(stdout=Terminal(), stderr=Terminal()))
    assert run("ingest", tmp_path / "a.txt", "-s").exit_code == 0
    assert common.sys.stderr.getvalue() == ""
    monkeypatch.undo()
    out = run("ingest", tmp_path / "b.txt")
    assert "Ingesting" not in out.stderr


def test_read_ahead_only_when_it_pays(monkeypatch):
    from stet.ingest import Entry, Options, Writer, _read_ahead, readahead

    monkeypatch.delenv("STET_WORKERS", raising=False)
    monkeypatch.setattr(readahead, "available", lambda: True)
    writer = Writer(None, Options(by="t"))
    texts = [Entry(f"{i}.txt") for i in range(100)]
    ahead = _read_ahead(texts, [1000] * 100, writer)
    assert isinstance(ahead, readahead.ReadAhead) and ahead.paths == [(e.path, e.location) for e in texts]
    assert _read_ahead(texts[:5], [1000] * 5, writer) is None  # a few small files: not worth it
    assert _read_ahead(texts[:1], [64 << 20], writer) is not None  # one file of 64 MiB is
    assert _read_ahead(texts, [1000] * 100, writer, 0) is None  # one process, as asked
    monkeypatch.setattr(readahead, "available", lambda: False)  # one CPU, or no fork
    assert _read_ahead(texts, [1000] * 100, writer) is None


def test_read_ahead_stops_with_the_writer(tmp_path, monkeypatch):
    """A writer that fails mid-ingest takes the read-ahead worker down with it: the error
    comes through, the worker is gone, and what was committed is whole."""
    import multiprocessing

    from stet import Archive
    from stet import ingest as ingest_module
    from stet.ingest import readahead, writer
    from stet.errors import StetError

    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(120):
        (folder / f"{i:03d}.txt").write_text(f"شهادت {i}\n" * (i + 1), encoding="utf-8")
    monkeypatch.delenv("STET_WORKERS", raising=False)
    monkeypatch.setattr(readahead, "available", lambda: True)
    monkeypatch.setattr(readahead, "SLOT_FILES", 10)
    monkeypatch.setattr(writer, "BATCH_FILES", 20)
    writes = []
    real_insert = ingest_module.Writer._insert

    def failing(self, items):
        writes.append(len(items))
        if len(writes) == 3:
            raise StetError("the disk is full")
        return real_insert(self, items)

    monkeypatch.setattr(ingest_module.Writer, "_insert", failing)
    with Archive(tmp_path / "a.db") as archive:
        with pytest.raises(StetError, match="the disk is full"):
            archive.ingest([folder], by="t")
        assert multiprocessing.active_children() == []
        assert archive.verify() == []
        assert len(list(archive.documents())) == 40  # two batches of twenty committed
