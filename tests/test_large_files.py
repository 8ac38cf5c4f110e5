"""Files of any size: hashing and storing stream in blocks, so memory stays flat.

The peak memory (maximum resident set size) of a real ``stet ingest`` is measured in a
child process. The file here is 256 MiB to keep the suite fast; the 1 GiB figure is measured
by hand the same way (``python tests/test_large_files.py 1024``) and reported in
docs/formats.md.
"""

import hashlib
import json
import os
import subprocess
import sys

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
