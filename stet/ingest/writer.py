"""The one writer: prepared files stored in batched transactions, all or nothing per batch.

Each batch is one ``BEGIN IMMEDIATE`` transaction (:func:`~.rows.plan`, then
:meth:`~.rows.Plan.execute`): raw bytes in chunks, the document row, the text and the event
commit together, or not at all. A crash loses at most the open batch, which a re-run
ingests as new files (never as duplicates of something missing). A large file (prepared
without its bytes) is a batch of its own, its bytes streamed from its path.

A bag's payload files are one unit: the transaction opened at its first file, with one
``bag`` event recording the bag, stays open through every batch of its files, and each
payload file's event points at that event. A payload file whose bytes are not the ones
validated (changed since), or that can no longer be read, refuses the bag whole.
"""

from __future__ import annotations

import os
from typing import Any

from ..bags import ValidBag
from ..errors import InvalidInput
from ..hashing import CHUNK_SIZE
from ..provenance import Chain
from .journal import Journal
from .prepared import Prepared, printable
from .rows import FileChanged, Options, plan, result

#: A batch commits after this many files or this many bytes, whichever comes first.
BATCH_FILES = 1000
BATCH_BYTES = 64 * CHUNK_SIZE


class Writer:
    """Stores prepared files in batched transactions; see the module docstring.

    Give it files in order with :meth:`add` (or :meth:`error` for a path that could not be
    read), then call :meth:`finish`; call :meth:`abort` when giving up early. A payload file
    that is not what was validated rolls its bag back and raises InvalidInput. It offers
    :attr:`pending` and :meth:`flush` to a :class:`~.readahead.ReadAhead` (its ``Sink``)."""

    def __init__(self, conn, options: Options) -> None:
        self.conn = conn
        self.options = options
        #: The open batch: each file with its slot (where its results go in :attr:`results`).
        self.batch: list[tuple[int, Prepared]] = []
        self.batch_bytes = 0
        self._slots: list[list[dict[str, Any]]] = []
        self._bag: ValidBag | None = None  # the bag whose transaction is open
        self._bag_slot = 0  # the first slot of its files
        self._bag_event: dict[str, Any] = {}  # seq and hash of its event
        #: How transactions reach the disk (:mod:`.journal`): set by ``ingest``; None: the
        #: connection's own mode, nothing switched.
        self.journal: Journal | None = None

    @property
    def pending(self) -> int:
        """How many of the files given to :meth:`add` wait in the open batch, not yet
        stored: always the last ones given."""
        return len(self.batch)

    @property
    def results(self) -> list[dict[str, Any]]:
        """One result per file (an attachment's after its message's), in the order added."""
        return [reported for slot in self._slots for reported in slot]

    def error(self, path: str, message: str) -> None:
        self._slots.append([result(Prepared(path, os.path.basename(path)), None, "error",
                                   error=message)])

    def add(self, item: Prepared) -> None:
        member = item.bag_file
        self._enter(member.bag if member is not None else None)
        if member is not None:
            if item.error:
                why = item.error.removeprefix(f"{item.path}: ")
                self._refuse(f"{member.relative}: {why}")
            if item.sha256 != member.sha256:
                self._refuse(f"{member.relative}: changed since the bag was validated (its "
                             "bytes are not the ones its manifest vouches for)")
            item.details = {**item.details, "bag": {**self._bag_event, **item.details["bag"]}}
        if item.error:
            self.error(item.path, item.error)
            return
        slot = len(self._slots)
        self._slots.append([])
        if item.data is None:  # a large file: its own transaction (or its bag's), streamed
            self.flush()
            try:
                if self._bag is None and self.journal is not None and self.options.store is None:
                    self.journal.large(item.size)  # written once, when it can be
                self._write([(slot, item)])
            except FileChanged as exc:
                self._slots[slot] = [result(item, None, "error", error=str(exc))]
            return
        self.batch.append((slot, item))
        self.batch_bytes += item.size + _text_bytes(item)
        if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Store the open batch (in its bag's transaction, if it is a bag's, left open)."""
        if self.batch:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            if self.journal is not None:
                self.journal.batches()  # through the WAL (after large files written once)
            self._write(batch)

    def finish(self) -> None:
        """Store everything given, and commit the last bag."""
        self._enter(None)
        self.flush()

    def abort(self) -> None:
        """Roll back a bag's transaction left open (by an error elsewhere): none of it stays."""
        if self._bag is not None:
            self._rollback_bag()

    def _enter(self, bag: ValidBag | None) -> None:
        """Make ``bag``'s transaction the open one (None: none): commit the one before it, and
        begin a bag's with its event."""
        if bag is self._bag:
            return
        if self._bag is not None:
            self.flush()
            self.conn.execute("COMMIT")
            self._bag = None
        if bag is None:
            return
        self.flush()  # the files before the bag, in their own transaction
        if self.journal is not None:
            self.journal.batches()
        opts = self.options
        self.conn.execute("BEGIN IMMEDIATE")
        self._bag, self._bag_slot = bag, len(self._slots)
        try:
            event = Chain(self.conn).append(
                actor=opts.by, action="bag", subject=f"bag:{printable(bag.name or '')}",
                document=None,
                details={**bag.event_details(), "path": printable(bag.path),
                         "name": printable(bag.name or os.path.basename(bag.path)),
                         "restricted": bool(opts.restricted)})
        except BaseException:
            self._rollback_bag()
            raise
        self._bag_event = {"event": event["seq"], "hash": event["hash"]}

    def _rollback_bag(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        for slot in range(self._bag_slot, len(self._slots)):
            self._slots[slot] = []
        self.batch, self.batch_bytes, self._bag = [], 0, None

    def _refuse(self, why: str) -> None:
        """Refuse the open bag whole: nothing of it is written."""
        path = self._bag.path
        self._rollback_bag()
        raise InvalidInput(f"invalid bag {printable(path)}: {printable(why)}")

    def _write(self, batch: list[tuple[int, Prepared]]) -> None:
        """Store a batch: in the open bag's transaction, or in one of its own."""
        conn = self.conn
        if self._bag is not None:
            try:
                self._insert(batch)
            except FileChanged as exc:  # a large file, alone in its write
                _, item = batch[0]
                self._refuse(f"{item.bag_file.relative}: "
                             + str(exc).removeprefix(f"{item.path}: "))
            except BaseException:
                self._rollback_bag()
                raise
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert(batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for slot, _ in batch:
                self._slots[slot] = []
            raise

    def _insert(self, batch: list[tuple[int, Prepared]]) -> None:
        """Plan the batch's rows and events, write them, and record each file's results."""
        planned = plan(self.conn, self.options, [item for _, item in batch])
        planned.execute(self.conn)
        for (slot, _), reported in zip(batch, planned.results):
            self._slots[slot] = reported


def _text_bytes(item: Prepared) -> int:
    """About how many bytes an item's text adds to a batch."""
    if item.text_utf8 is not None:
        return len(item.text_utf8)
    return len(item.extraction.text) if item.extraction else 0
