"""Read ahead: prepare files in one worker process, hand their bytes back through shared memory.

Ingesting plain text and binary files is about half preparing (reading, hashing, decoding
to validate and count the text, sniffing the media type) and half storing (SQLite, the
event chain). :class:`ReadAhead` runs the first half in one forked worker process while the
main process stores, so the two halves share the machine's two (or more) CPUs. Sending every
file's bytes back through a pipe costs about what preparing them does (benchmarks/README.md,
"Parallel ingest"), so they travel through an anonymous shared mapping instead: the worker
copies each small file's bytes into one of :data:`SLOTS` regions of :data:`SLOT_BYTES`, and
the main process binds views of them straight into its inserts. Only the small
per-file facts (hash, size, media type, text length) are pickled.

Integrity: the bytes stored are the very bytes the worker hashed (no second read that could
see a changed file). A region is handed back to the worker only after the main process has
inserted everything in it (``flush``), so a region is never rewritten while it is read.
Memory is flat: the regions are allocated once, whatever the number of files.

If the main process dies (even ``kill -9``), the worker's pipes break and it exits; the
mapping has no name, so nothing is left behind.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import traceback
from typing import Callable, Iterator

from .errors import StetError
from .ingest import SMALL_FILE, Prepared, hash_texts, prepare

#: Regions of the shared mapping: one being filled by the worker, the others being stored.
SLOTS = 3
#: The size of a region; a file larger than :data:`~stet.ingest.SMALL_FILE` is
#: streamed by the writer from its path as before, so every file in a region fits.
SLOT_BYTES = 32 * 1024 * 1024
#: The most files one message (one region) carries, bounding the pickled facts.
SLOT_FILES = 1000

assert SLOT_BYTES >= SMALL_FILE


def available() -> bool:
    """Whether reading ahead can run here: fork (the worker inherits the mapping) and a
    second CPU for it to run on."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) > 1


class ReadAhead:
    """Prepared files for ``paths`` (each a path and its absolute form, or None), in order,
    made by one worker process.

    Use as a context manager (it forks on entry: enter it before starting any thread) and
    iterate; ``flush`` is called once everything handed out from a region has been given to
    the writer, and must store it (the region is then reused)."""

    def __init__(self, paths: list[tuple[str, str | None]], flush: Callable[[], None]) -> None:
        self.paths = paths
        self.flush = flush
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> "ReadAhead":
        context = multiprocessing.get_context("fork")
        self._map = mmap.mmap(-1, SLOTS * SLOT_BYTES)  # anonymous and shared: inherited by fork
        self._results, results_out = context.Pipe(duplex=False)
        free_in, self._free = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_work, name="stet-readahead", daemon=True,
            args=(self.paths, self._map, results_out, free_in, (self._results, self._free)),
        )
        self._process.start()
        results_out.close()
        free_in.close()
        return self

    def __iter__(self) -> Iterator[Prepared]:
        view = memoryview(self._map)
        try:
            while True:
                try:
                    message = self._results.recv()
                except EOFError:
                    raise StetError("the reading process stopped before it had read every file") from None
                if message is None:
                    return
                kind, slot, payload = message
                if kind == "error":
                    raise StetError(f"the reading process failed: {payload}")
                for item in payload:
                    if item.shared is not None:
                        offset, size = item.shared
                        item.data, item.shared = view[offset:offset + size], None
                    yield item
                self.flush()  # everything in the region is stored: it may be filled again
                for item in payload:
                    item.data = None
                del payload
                try:
                    self._free.send(slot)
                except OSError:
                    pass  # the worker has finished (or died: the next message says so)
        finally:
            view.release()

    def __exit__(self, *exc_info) -> None:
        self._results.close()
        self._free.close()  # the worker, waiting for a region, sees the end and stops
        process = self._process
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        try:
            self._map.close()
        except BufferError:
            pass  # a view is still held (an interrupted ingest): freed with the last of them


def _work(paths, shared, results, free, parent_ends) -> None:
    """The worker: prepare each file, copy a small file's bytes into the current region,
    send each region's facts when it is full, wait for a free region."""
    for end in parent_ends:
        end.close()
    try:
        free_slots = list(range(SLOTS))
        slot, offset, batch = free_slots.pop(), 0, []

        def send() -> int:
            results.send(("batch", slot, batch))
            if free_slots:
                return free_slots.pop()
            return free.recv()  # EOFError when the main process is gone: the worker stops

        for path, location in paths:
            item = hash_texts(prepare(path, location))
            if item.data is not None:
                if offset + item.size > SLOT_BYTES or len(batch) >= SLOT_FILES:
                    slot, offset, batch = send(), 0, []
                start = slot * SLOT_BYTES + offset
                shared[start:start + item.size] = item.data
                item.shared = (start, item.size)
                ext = item.extraction
                if ext is not None and ext.verbatim:
                    # the text is the bytes: the main process stores them, it needs the length
                    item.text_length = len(ext.text)
                    ext.text = ""
                item.data = None
                offset += item.size
            elif len(batch) >= SLOT_FILES:
                slot, offset, batch = send(), 0, []
            batch.append(item)
        results.send(("batch", slot, batch))
        results.send(None)
    except (EOFError, BrokenPipeError):
        return  # the main process is gone or stopped early
    except BaseException:
        try:
            results.send(("error", None, traceback.format_exc(limit=-1).strip().splitlines()[-1]))
        except (OSError, EOFError):
            pass
