"""A process killed with SIGKILL mid-ingest leaves no half-written document; a re-run completes.

The child process ingests a folder with small batches and kills itself with SIGKILL at a
chosen point: while files are being prepared, after some rows of an open transaction are
written, just before a COMMIT. One more run is killed from outside, by the parent, once the
child has committed something. After each kill, `verify` passes and every document is
whole; running the same ingest again finishes the folder with no duplicates.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from stet import Archive

FILES = 40

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import stet.ingest as ingest
    import stet.ingest.writer
    from stet import Archive

    db, folder, where, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    stet.ingest.writer.BATCH_FILES = 4
    count = 0
    if os.environ.get("CRASH_AHEAD"):  # prepared in the read-ahead worker, 4 files a region
        import stet.ingest.readahead as readahead
        readahead.available = lambda: True  # even on one CPU
        ingest.READ_AHEAD_MIN_FILES = 1
        readahead.SLOT_FILES = 4
        real_enter = readahead.ReadAhead.__enter__
        def __enter__(self):
            entered = real_enter(self)
            with open(os.environ["CRASH_AHEAD"], "w") as out:
                out.write(str(self._process.pid))
            return entered
        readahead.ReadAhead.__enter__ = __enter__

    def tick():
        global count
        count += 1
        if count == after:
            os.kill(os.getpid(), signal.SIGKILL)

    if where == "prepare":
        real_prepare = ingest.prepare
        def prepare(*args):
            tick()
            return real_prepare(*args)
        ingest.prepare = prepare
        if os.environ.get("CRASH_AHEAD"):  # the worker kills itself; the writer must stop
            readahead.prepare = prepare
    elif where == "rows":  # inside the open transaction, after the blobs went in
        real_insert = ingest.Writer._insert
        def _insert(self, items):
            conn = self.conn
            class Killing:
                def __getattr__(self, name):
                    return getattr(conn, name)
                def executemany(self, sql, rows):
                    result = conn.executemany(sql, rows)
                    if sql.startswith("INSERT INTO documents"):
                        tick()
                    return result
            self.conn = Killing()
            try:
                return real_insert(self, items)
            finally:
                self.conn = conn
        ingest.Writer._insert = _insert
    elif where == "commit":  # every row of the batch written, COMMIT not yet run
        real_write = ingest.Writer._write
        def _write(self, items):
            conn = self.conn
            class Killing:
                in_transaction = property(lambda self: conn.in_transaction)
                def __getattr__(self, name):
                    return getattr(conn, name)
                def execute(self, sql, *args):
                    if sql == "COMMIT":
                        tick()
                    return conn.execute(sql, *args)
            self.conn = Killing()
            try:
                return real_write(self, items)
            finally:
                self.conn = conn
        ingest.Writer._write = _write
    elif where == "signal":  # tell the parent after each commit, wait to be killed
        real_write = ingest.Writer._write
        def _write(self, items):
            real_write(self, items)
            print("committed", flush=True)
            sys.stdin.readline()
        ingest.Writer._write = _write

    Archive(db).ingest([folder], by="crash-test")
    print("finished", flush=True)
    """
)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(FILES):
        sub = root / f"box{i % 3}"
        sub.mkdir(exist_ok=True)
        if i % 5 == 0:
            (sub / f"item{i:02d}.bin").write_bytes(os.urandom(3000 + i))
        else:
            (sub / f"item{i:02d}.txt").write_text(f"Testimony {i}: " + "شهادت\u200cها " * (i + 1))
    return root


def run_child(db, folder, where, after, **kwargs):
    return subprocess.run([sys.executable, "-c", CHILD, db, str(folder), where, str(after)],
                          capture_output=True, text=True, timeout=120, **kwargs)


def ahead_env(tmp_path):
    """The environment that makes the child read ahead in a worker, noting its pid."""
    return {**os.environ, "CRASH_AHEAD": str(tmp_path / "worker.pid")}


def assert_worker_gone(tmp_path):
    """The read-ahead worker of a killed ingest exits on its own (its pipes broke). It may
    still be finishing when its parent is reaped, so wait for it, up to a generous limit."""
    pid = int((tmp_path / "worker.pid").read_text())
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and _state(pid) not in ("Z", "X"):
        assert time.monotonic() < deadline, f"read-ahead worker {pid} outlived its parent"
        time.sleep(0.05)


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def assert_whole(db):
    with Archive(db) as archive:
        assert archive.verify() == []
        conn = archive.conn
        docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        # every document has its bytes, its text and its ingest event: none half-written
        assert conn.execute("SELECT count(*) FROM texts").fetchone()[0] == docs
        assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == docs
        assert conn.execute("SELECT count(DISTINCT document) FROM events WHERE action = 'ingest'").fetchone()[0] == docs
        return docs


@pytest.mark.slow
@pytest.mark.parametrize("where, after", [("prepare", 1), ("prepare", 11), ("rows", 1), ("rows", 3),
                                          ("commit", 1), ("commit", 4)])
def test_killed_mid_ingest_then_completed(tmp_path, folder, where, after):
    db = str(tmp_path / "archive.db")
    killed = run_child(db, folder, where, after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = assert_whole(db) if os.path.exists(db) else 0
    assert partial < FILES
    done = run_child(db, folder, "none", 0)
    assert done.returncode == 0, done.stderr
    assert assert_whole(db) == FILES
    conn = sqlite3.connect(db)
    statuses = conn.execute(
        "SELECT action, count(*) FROM events WHERE actor = 'crash-test' GROUP BY action ORDER BY action"
    ).fetchall()
    assert dict(statuses) == ({"ingest": FILES, "ingest-duplicate": partial} if partial else {"ingest": FILES})


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to watch the worker")
@pytest.mark.parametrize("where, after", [("rows", 2), ("commit", 3)])
def test_killed_while_reading_ahead(tmp_path, folder, where, after):
    """The same with the files prepared in the read-ahead worker: the writer is killed, the
    worker goes too, nothing is half-written, and a re-run completes."""
    db = str(tmp_path / "archive.db")
    killed = run_child(db, folder, where, after, env=ahead_env(tmp_path))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_worker_gone(tmp_path)
    partial = assert_whole(db)
    assert 0 < partial < FILES
    done = run_child(db, folder, "none", 0, env=ahead_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert assert_whole(db) == FILES


@pytest.mark.slow
def test_read_ahead_worker_killed(tmp_path, folder):
    """A read-ahead worker that dies (here it SIGKILLs itself while preparing its 11th file)
    stops the ingest with one line on stderr; what was committed is whole, a re-run completes."""
    db = str(tmp_path / "archive.db")
    failed = run_child(db, folder, "prepare", 11, env=ahead_env(tmp_path))
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("stet.errors.StetError: the reading "
                                                            "process stopped")
    assert assert_whole(db) < 11
    done = run_child(db, folder, "none", 0, env=ahead_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert assert_whole(db) == FILES


@pytest.mark.slow
def test_killed_from_outside(tmp_path, folder):
    db = str(tmp_path / "archive.db")
    child = subprocess.Popen([sys.executable, "-c", CHILD, db, str(folder), "signal", "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let three batches commit, then kill it while it waits
            assert child.stdout.readline() == "committed\n"
            child.stdin.write("\n")
            child.stdin.flush()
        assert child.stdout.readline() == "committed\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert assert_whole(db) == 16  # four batches of four committed
    done = run_child(db, folder, "none", 0)
    assert done.returncode == 0, done.stderr
    assert assert_whole(db) == FILES
