"""Preparing files in a pool of worker processes, for formats whose extraction is costly.

The files are cut into tasks of at most :data:`TASK_FILES` files and :data:`TASK_BYTES`
bytes (a larger file is a task of its own); a few tasks are in flight at a time, so memory
stays flat however many files there are, and results come back in the order given. Each
item comes back whole, small files' bytes included (a large file's are streamed by the
writer from its path), so the bytes stored are the very bytes the worker hashed. A
verbatim text travels once, as the bytes (:func:`~.prepared.drop_verbatim_texts`).

(A worker used to send no bytes back, and the main process read each small file again from
the page cache; measured against sending them, that no longer paid: benchmarks/README.md,
"Parallel ingest".)
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

from ..hashing import CHUNK_SIZE
from .prepared import Prepared, drop_verbatim_texts, hash_texts, prepare

#: A worker's task: at most this many files and bytes (a larger file is a task of its own).
TASK_FILES = 64
TASK_BYTES = 4 * CHUNK_SIZE


def prepared(files: list[tuple[str, str | None]], sizes: list[int],
             workers: int) -> Iterator[Prepared]:
    """Each of ``files`` (a path and its absolute form, or None) prepared in one of
    ``workers`` worker processes, in order; ``sizes`` are their sizes, to cut tasks. At most
    two tasks per worker are in flight at a time."""
    methods = multiprocessing.get_all_start_methods()
    # fork: the workers need nothing re-imported; they never touch the parent's database.
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    tasks = _tasks(sizes)
    pool = ProcessPoolExecutor(workers, mp_context=context)
    pending: deque = deque()

    def submit() -> None:
        task = next(tasks, None)
        if task is not None:
            pending.append(pool.submit(prepare_many, [files[i] for i in task]))

    try:
        for _ in range(2 * workers):
            submit()
        while pending:
            items = pending.popleft().result()
            submit()
            yield from items
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prepare_many(files: list[tuple[str, str | None]]) -> list[Prepared]:
    """:func:`~.prepared.prepare` for a worker's task (one round trip for many files)."""
    items = [hash_texts(prepare(path, location)) for path, location in files]
    for item in items:
        drop_verbatim_texts(item)
    return items


def _tasks(sizes: list[int]) -> Iterator[list[int]]:
    """Consecutive files cut into tasks of at most TASK_FILES files and TASK_BYTES bytes."""
    task: list[int] = []
    task_bytes = 0
    for index, size in enumerate(sizes):
        if task and (len(task) >= TASK_FILES or task_bytes + size > TASK_BYTES):
            yield task
            task, task_bytes = [], 0
        task.append(index)
        task_bytes += size
    if task:
        yield task
