"""Reading and parsing a large file in a worker process while the importer writes.

The protocol: the importer starts ``python -I -c "...; main()" FILE SIZE`` (a fresh,
isolated interpreter: neither the working directory nor ``$PYTHONPATH`` nor the user's site
folder is on its path, so a ``stet.py`` or ``sitecustomize.py`` planted there never runs).
The worker reads and parses FILE (:func:`stet.annotations.files.read`,
:func:`stet.annotations.w3c.parse`) and writes pickled ``(kind, value)`` pairs to its
standard output, each as a frame (its length, 8 bytes little-endian, then the pickle):
``("batch", [(where, fields), ...])`` for each batch of SIZE (``fields``: a
:class:`~stet.annotations.w3c.Parsed` as a plain tuple, made one again here: a named tuple
pickles as its class and arguments, and crosses slower), ``("done", sha256 of the
file)`` at the end, or ``("invalid", message)`` for a malformed item and ``("failed",
message)`` for anything else. It never opens the archive.

A thread of the importer's process reads the frames as they come, up to :data:`AHEAD` of
them ahead of the batch being written, so that the worker never waits for the importer to
finish writing one (the pipe holds 64 KiB; a batch is about 3 MB) and parses the next ones
meanwhile; the importer unpickles each when it gets to it.

The garbage collector: parsing makes many short-lived dicts and no cycles, and collections
cost about a third of the time. The worker pauses it for its whole life (its own process).
The library does not pause it in the caller's process; a command that imports may, with
:func:`collector_paused` around its call.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from ..errors import InvalidInput, StetError
from ..system import cpus
from .files import parsed_batches, read
from .w3c import Parsed, parse

#: Files at least this large are read and parsed in a worker process while this one writes.
WORKER_BYTES = 8 << 20
#: Frames (batches) read from the worker ahead of the one the importer is writing.
AHEAD = 4
_LENGTH = struct.Struct("<Q")

Batch = list[tuple[str, Parsed]]


def worth_a_worker(path: Path) -> bool:
    """Whether to parse ``path`` in a worker: a large file and a second CPU to run it on."""
    return cpus() > 1 and path.stat().st_size >= WORKER_BYTES


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The garbage collector paused inside, as it was restored after. It is process-wide:
    for a process's own main loop (the worker's, a command's), not for library code."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def parse_in_worker(path: Path, size: int, digest: list[str]) -> Iterator[Batch]:
    """The batches of ``parsed_batches(read(path), parse, size)`` (raising the same
    :class:`InvalidInput` at the same place), parsed in a worker process; appends the file's
    SHA-256 to ``digest`` at the end. Closing the generator stops the worker at once."""
    errors = tempfile.TemporaryFile()  # not a pipe: a chatty worker must never block on it
    # It starts in the folder of the file it reads, with that path absolute.
    worker = subprocess.Popen(
        [sys.executable, "-I", "-c", "from stet.annotations.worker import main; main()",
         os.path.abspath(path), str(size)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
        cwd=os.path.dirname(os.path.abspath(path)),
    )
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=AHEAD)
    make = Parsed._make
    reader = threading.Thread(target=_read_frames, args=(worker.stdout, frames),
                              name="stet-import-reader", daemon=True)
    reader.start()
    try:
        while True:
            frame = frames.get()
            if frame is None:
                worker.wait()
                errors.seek(0)
                problem = errors.read().decode(errors="replace").strip().splitlines()
                raise StetError("the worker reading the file stopped unexpectedly"
                                + (f": {problem[-1]}" if problem else "")) from None
            kind, value = pickle.loads(frame)
            if kind == "batch":
                yield [(where, make(fields)) for where, fields in value]
            elif kind == "done":
                digest.append(value)
                return
            elif kind == "invalid":
                raise InvalidInput(value)
            else:
                raise StetError(f"the worker reading the file failed: {value}")
    finally:
        if worker.poll() is None:
            worker.kill()  # its end of the pipe closes: the reader sees the end and stops
        while reader.is_alive():  # (a frame it is putting may wait for room)
            with contextlib.suppress(queue.Empty):
                frames.get(timeout=0.05)
        worker.stdout.close()
        worker.wait()
        errors.close()


def _read_frames(stream: BinaryIO, frames: queue.Queue[bytes | None]) -> None:
    """Put each frame the worker writes into ``frames``, then None at the end of the stream
    (or a frame cut short: the worker stopped)."""
    try:
        while True:
            head = stream.read(_LENGTH.size)
            if len(head) < _LENGTH.size:
                break
            (length,) = _LENGTH.unpack(head)
            frame = stream.read(length)
            if len(frame) < length:
                break
            frames.put(frame)
    except (OSError, ValueError):  # closed under it: the importer is stopping
        pass
    finally:  # whatever stopped it: the importer waiting for a frame must hear of it
        frames.put(None)


def _serve(path: Path, size: int, out: BinaryIO) -> None:
    """The worker's side of :func:`parse_in_worker`."""
    def send(kind: str, value: Any) -> None:
        frame = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_LENGTH.pack(len(frame)))
        out.write(frame)
        out.flush()

    try:
        sha256: list[str] = []  # the file's, hashed as it is read (not read again at the end)
        for batch in parsed_batches(read(path, sha256), parse, size):
            send("batch", [(where, tuple(parsed)) for where, parsed in batch])
        send("done", sha256[0])
    except InvalidInput as exc:
        send("invalid", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the importer, which stops
        send("failed", f"{type(exc).__name__}: {exc}")


def main() -> None:
    """The worker process: ``FILE SIZE`` in ``sys.argv``."""
    try:
        with collector_paused():  # this process is ours: see the module's docstring
            _serve(Path(sys.argv[1]), int(sys.argv[2]), sys.stdout.buffer)
    except BrokenPipeError:  # the importer stopped reading: it found a problem itself
        os._exit(1)
