"""Read ahead: prepare files in one worker process, hand their bytes back through shared memory.

Ingesting plain text and binary files is about half preparing (reading, hashing, decoding
to validate and count the text, sniffing the media type) and half storing (SQLite, the
event chain). :class:`ReadAhead` runs the first half in one forked worker process while the
main process stores, so the two halves share the machine's two (or more) CPUs. Sending every
file's bytes back through a pipe costs about what preparing them does (benchmarks/README.md,
"Parallel ingest"), so they travel through an anonymous shared mapping instead: the worker
copies each small file's bytes into one of :data:`SLOTS` regions of :data:`SLOT_BYTES`, and
the main process binds views of them straight into its inserts. Only the small
per-file facts (hash, size, media type, text length, where its bytes are) are pickled.

Integrity: the bytes stored are the very bytes the worker hashed (no second read that could
see a changed file). A region is handed back to the worker only after the writer has
stored everything that came in it, so a region is never rewritten while it is read. Memory
is flat: the regions are allocated once, whatever the number of files.

If the main process dies (even ``kill -9``), the worker's pipes break and it exits; the
mapping has no name, so nothing is left behind.
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import traceback
from collections.abc import Iterator
from typing import Protocol

from ..errors import StetError
from ..system import cpus
from .prepared import Prepared, drop_verbatim_texts, hash_texts, prepare

try:
    import fcntl
except ImportError:  # not on a Unix
    fcntl = None

#: Regions of the shared mapping (96 MiB in all). Small regions start the writer early and
#: keep both processes busy; the writer's batches (BATCH_FILES, BATCH_BYTES) span several.
SLOTS = 12
#: The size of a region; a file larger than :data:`~.prepared.SMALL_FILE` is
#: streamed by the writer from its path as before, so every file read whole fits in one.
SLOT_BYTES = 8 * 1024 * 1024
#: The most files one message (one region) carries, bounding the pickled facts.
SLOT_FILES = 250
#: The pipe that carries those facts: room for several regions' (about 80 KB each).
PIPE_BYTES = 1024 * 1024


def available() -> bool:
    """Whether reading ahead can run here: fork (the worker inherits the mapping) and a
    second CPU for it to run on."""
    return "fork" in multiprocessing.get_all_start_methods() and cpus() > 1


class Sink(Protocol):
    """What :class:`ReadAhead` needs of the one it hands items to (:class:`~.writer.Writer`)."""

    @property
    def pending(self) -> int:
        """How many of the items given are not yet stored: always the last ones given."""

    def flush(self) -> None:
        """Store every item given so far."""


class ReadAhead:
    """Prepared files for ``paths`` (each a path and its absolute form, or None), in order,
    made by one worker process.

    Use as a context manager (it forks on entry: enter it before starting any thread) and
    iterate, giving each item to ``sink`` in turn. A region is reused once every item from
    it is stored (all but the last ``sink.pending`` items given); when the worker would run
    out of regions, ``sink.flush()`` stores what is pending first."""

    def __init__(self, paths: list[tuple[str, str | None]], sink: Sink) -> None:
        self.paths = paths
        self.sink = sink
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> ReadAhead:
        context = multiprocessing.get_context("fork")
        self._map = mmap.mmap(-1, SLOTS * SLOT_BYTES)  # anonymous and shared: inherited by fork
        self._results, results_out = context.Pipe(duplex=False)
        _widen(results_out)
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
        held: list[tuple[int, int, list[Prepared]]] = []  # regions not yet all stored:
        given = 0  # (slot, how many items were given up to its last, its items)
        try:
            while True:
                try:
                    message = self._results.recv()
                except EOFError:
                    raise StetError("the reading process stopped before it had read every file") from None
                if message is None:
                    return
                kind, slot, payload, places = message
                if kind == "error":
                    raise StetError(f"the reading process failed: {payload}")
                for item, place in zip(payload, places):
                    if place is not None:  # its bytes wait in the region (offset, size)
                        offset, size = place
                        item.data = view[offset:offset + size]
                    yield item
                given += len(payload)
                held.append((slot, given, payload))
                del payload
                if len(held) >= SLOTS - 1:
                    self.sink.flush()  # the worker is down to its last free region
                stored = given - self.sink.pending
                while held and held[0][1] <= stored:
                    self._release(held.pop(0))
        finally:
            held.clear()
            view.release()

    def _release(self, region: tuple[int, int, list[Prepared]]) -> None:
        """Give a stored region back to the worker, to be filled again."""
        slot, _, items = region
        for item in items:
            item.data = None
        try:
            self._free.send(slot)
        except OSError:
            pass  # the worker has finished (or died: the next message says so)

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


def _widen(end) -> None:
    """Make the pipe hold 1 MiB (Linux; 64 KiB by default), so that the worker can send a
    region's facts and go on preparing without waiting for the writer to read them."""
    try:
        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        pass  # another system, or a lower limit: the worker waits more, nothing else changes


def _work(paths, shared, results, free, parent_ends) -> None:
    """The worker: prepare each file, copy a small file's bytes into the current region,
    send each region's facts when it is full (with where each item's bytes are in it: an
    offset and a size, or None), wait for a free region."""
    for end in parent_ends:
        end.close()
    gc.disable()  # (inherited off from the writer; said here too) no cycles made here
    try:
        free_slots = list(range(SLOTS))
        slot, offset, batch, places = free_slots.pop(), 0, [], []

        def send() -> int:
            results.send(("batch", slot, batch, places))
            if free_slots:
                return free_slots.pop()
            return free.recv()  # EOFError when the main process is gone: the worker stops

        for path, location in paths:
            item = hash_texts(prepare(path, location))
            # (a file that grew past a region between its size and its read keeps its bytes
            # in the message, as a pool's worker sends attachments)
            place = None
            if item.data is not None and item.size <= SLOT_BYTES:
                if offset + item.size > SLOT_BYTES or len(batch) >= SLOT_FILES:
                    slot, offset, batch, places = send(), 0, [], []
                start = slot * SLOT_BYTES + offset
                shared[start:start + item.size] = item.data
                place = (start, item.size)
                drop_verbatim_texts(item)  # the main process stores the bytes as the text
                item.data = None
                offset += item.size
            elif len(batch) >= SLOT_FILES:
                slot, offset, batch, places = send(), 0, [], []
            batch.append(item)
            places.append(place)
        results.send(("batch", slot, batch, places))
        results.send(None)
    except (EOFError, BrokenPipeError):
        return  # the main process is gone or stopped early
    except BaseException:
        try:
            results.send(("error", None, traceback.format_exc(limit=-1).strip().splitlines()[-1], None))
        except (OSError, EOFError):
            pass
