"""The hash-chained event log.

Each event is a row of ``events``; its ``hash`` is the SHA-256 of the canonical JSON of
``{seq, time, actor, action, subject, document, details, prev_hash}`` (``details`` as the
parsed JSON value), and ``prev_hash`` is the previous event's hash (64 zeros for the first).
The database refuses an event that does not extend the chain, and refuses UPDATE and DELETE.

Callers append events inside their own write transaction (taken with ``BEGIN IMMEDIATE``), so
an event commits together with the write it records, or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from .hashing import canonical_json, sha256_json, sha256_text
from .store import GENESIS_HASH
from . import timeutil

EVENT_FIELDS = ("seq", "time", "actor", "action", "subject", "document", "details", "prev_hash")


def event_hash(event: dict[str, Any]) -> str:
    """The hash of an event from its fields (``details`` may be JSON text or a value)."""
    body = {k: event[k] for k in EVENT_FIELDS}
    if isinstance(body["details"], str):
        body["details"] = json.loads(body["details"])
    return sha256_json(body)


def _canonical_event(record: dict[str, Any], details_text: str) -> str:
    """``canonical_json`` of an event whose details are already canonical text (the hot path
    of ingest: each event's details are serialized once). Equal to what
    :func:`event_hash` hashes."""
    # Sorted keys: action, actor, details, document, prev_hash, seq, subject, time.
    head = canonical_json({"action": record["action"], "actor": record["actor"]})
    tail = canonical_json({k: record[k] for k in ("document", "prev_hash", "seq", "subject", "time")})
    return f'{head[:-1]},"details":{details_text},{tail[1:]}'


@dataclass
class Chain:
    """Appends events to the log through one connection, inside the caller's transaction."""

    conn: Any  # sqlite3.Connection

    def head(self) -> tuple[int, str]:
        row = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def append_many(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append events (dicts of actor, action, subject, document, details[, time])."""
        if not events:
            return []
        seq, prev = self.head()
        rows = []
        out = []
        for event in events:
            seq += 1
            record = {
                "seq": seq,
                "time": event.get("time") or timeutil.iso(timeutil.now()),
                "actor": event["actor"],
                "action": event["action"],
                "subject": event.get("subject"),
                "document": event.get("document"),
                "details": event.get("details") or {},
                "prev_hash": prev,
            }
            details_text = canonical_json(record["details"])
            record["hash"] = prev = sha256_text(_canonical_event(record, details_text))
            rows.append(
                (record["seq"], record["time"], record["actor"], record["action"],
                 record["subject"], record["document"], details_text, record["prev_hash"],
                 record["hash"])
            )
            out.append(record)
        self.conn.executemany(
            "INSERT INTO events (seq, time, actor, action, subject, document, details, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return out

    def append(self, **event: Any) -> dict[str, Any]:
        return self.append_many([event])[0]


def iter_events(conn, *, document: int | None = None) -> Iterator[dict[str, Any]]:
    sql = "SELECT seq, time, actor, action, subject, document, details, prev_hash, hash FROM events"
    params: tuple = ()
    if document is not None:
        sql += " WHERE document = ?"
        params = (document,)
    for row in conn.execute(sql + " ORDER BY seq", params):
        event = dict(zip(EVENT_FIELDS + ("hash",), row))
        yield event


def check_chain(conn) -> Iterator[str]:
    """Yield one message per broken link or altered event, in chain order."""
    prev = GENESIS_HASH
    expected_seq = 1
    for event in iter_events(conn):
        seq = event["seq"]
        if seq != expected_seq:
            yield f"event {expected_seq}: missing (the chain jumps to {seq})"
        if event["prev_hash"] != prev:
            yield f"event {seq}: prev_hash does not match the hash of event {seq - 1}"
        try:
            recomputed = event_hash(event)
        except (ValueError, TypeError):
            yield f"event {seq}: details are not valid JSON"
            recomputed = None
        if recomputed is not None and recomputed != event["hash"]:
            yield f"event {seq}: hash mismatch (the event was altered)"
        prev = event["hash"]
        expected_seq = seq + 1
