"""How the writer's transactions reach the disk: the WAL for batches, every byte written once
for a large file.

An archive is in WAL mode (:func:`stet.store.connect`): readers never wait for the writer,
and a commit needs no ``fsync`` (``synchronous = NORMAL``). But every byte goes to the disk
twice, to the WAL then, at a checkpoint, into the database (which a thread of its own does
during an ingest: :func:`stet.store.background_checkpoints`). For a large file, whose
transaction is its bytes, that second write doubles the cost: a 1 GiB file took 4-8 times a
durable ``cp``. :meth:`Journal.large` stores such a file (from :data:`WRITE_ONCE_BYTES`) with
SQLite's rollback journal instead (``journal_mode = DELETE``, ``synchronous = FULL``): pages
appended to the database are written once, in place, and only the few existing pages the
transaction changes (index and table pages) are copied to the journal first. A crash (or
``kill -9``) leaves a hot journal, which the next connection that may write rolls back before
anything else: the transaction is all or nothing, as in WAL mode. ``synchronous = FULL`` is
what the rollback journal needs to be safe against a power cut at any moment, as ``NORMAL``
is for the WAL.

Leaving WAL mode needs the archive to itself: when another connection has it open (``stet
serve``, a reader), the switch is refused at once and the file goes through the WAL as
before. A transaction already open (a bag's) is never switched. The archive is in WAL mode
again before the next batch (:meth:`Journal.batches`) and at the end; should that switch
fail, the next connection that writes sets it again (:func:`stet.store.connect`).

What the window costs others (benchmarks/README.md, issue 14): while a large file is written
once, a process that opens the archive to write is refused at once (its ``PRAGMA
journal_mode = WAL`` in :func:`stet.store.connect` gets "database is locked", which the
command line reports as the archive being busy) instead of waiting for the lock as it would
in WAL mode. Readers, ``stet verify`` included, read the last commit as ever, also after a
crash in that window (measured: ``stet verify`` passes beside the hot journal).
"""

from __future__ import annotations

import contextlib
import sqlite3

from .. import store

#: Whether large files are stored with the rollback journal (written once). Off: through
#: the WAL, as every batch is (for measuring one against the other).
WRITE_ONCE = True
#: Files from this size on are written once; smaller ones (whose second write costs
#: little) go through the WAL, and the archive stays in WAL mode around them.
WRITE_ONCE_BYTES = 32 * 1024 * 1024


class Journal:
    """The journaling of one ingest's writes on ``conn``: background WAL checkpoints while
    batches are written (``checkpoints``: false when worker processes may fork at any time),
    the rollback journal for a large file's transaction (:meth:`large`), the WAL again for
    the next batch (:meth:`batches`). A context manager: the WAL again at its end."""

    def __init__(self, conn, *, checkpoints: bool = True) -> None:
        self.conn = conn
        self.checkpoints = checkpoints
        self._running: contextlib.AbstractContextManager | None = None
        self._synchronous: int | None = None  # the WAL's, while the rollback journal is on
        #: How many large files were written once (for tests and measurements).
        self.written_once = 0

    def __enter__(self) -> Journal:
        self._start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.batches(restart=False)
        self._stop()

    def _start(self) -> None:
        if self.checkpoints and self._running is None:
            running = store.background_checkpoints(self.conn)
            running.__enter__()
            self._running = running

    def _stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.__exit__(None, None, None)

    def large(self, size: int) -> bool:
        """Before the transaction of a large file of ``size`` bytes (none open): the rollback
        journal, when the file is large enough and the archive can switch to it (it stays on
        for the large files that follow). Whether it is on."""
        conn = self.conn
        if self._synchronous is not None:
            self.written_once += 1
            return True
        if not WRITE_ONCE or size < WRITE_ONCE_BYTES or conn.in_transaction or _mode(conn) != "wal":
            return False
        self._stop()  # the checkpoint thread's connection would keep the archive in WAL mode
        (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        (synchronous,) = conn.execute("PRAGMA synchronous").fetchone()
        conn.execute("PRAGMA busy_timeout = 0")  # another connection: refused at once
        try:
            switched = _set_mode(conn, "delete") == "delete"
        except sqlite3.OperationalError:  # another connection has the archive open
            switched = False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        if not switched:
            self._start()
            return False
        conn.execute("PRAGMA synchronous = FULL")
        self._synchronous = int(synchronous)
        self.written_once += 1
        return True

    def batches(self, *, restart: bool = True) -> None:
        """Before a batch's transaction (none open), and at the end (``restart`` false: no
        checkpoint thread again): the WAL again if a large file switched it off."""
        if self._synchronous is None or self.conn.in_transaction:
            return
        synchronous, self._synchronous = self._synchronous, None
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        try:
            _set_mode(self.conn, "wal")
        except sqlite3.OperationalError:
            pass  # a reader arrived: the next connection that writes sets WAL again
        if restart:
            self._start()


def _mode(conn) -> str:
    return conn.execute("PRAGMA journal_mode").fetchone()[0].lower()


def _set_mode(conn, mode: str) -> str:
    return conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0].lower()
