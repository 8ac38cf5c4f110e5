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
from typing import Any, Callable, Iterator

import orjson

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


def log(conn, *, document: int | None = None) -> Iterator[dict[str, Any]]:
    """The events, oldest first (only a document's, if given), each with its ``details``
    parsed, read from the cursor as they are consumed."""
    for event in iter_events(conn, document=document):
        event["details"] = json.loads(event["details"])
        yield event


#: The type each column of ``events`` must hold (``None`` allowed where listed).
_EVENT_TYPES = (("seq", (int,)), ("time", (str,)), ("actor", (str,)), ("action", (str,)),
                ("subject", (str, type(None))), ("document", (int, type(None))),
                ("details", (str,)), ("prev_hash", (str,)), ("hash", (str,)))


class DuplicateKey(ValueError):
    """A JSON object that names a key twice (Python keeps the last, SQLite the first)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DuplicateKey(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


def parse_details(text: str) -> tuple[Any, str | None]:
    """An event's details parsed, and why the text is not the canonical form of that value
    (``None`` when it is byte-identical to ``canonical_json`` of it). A text that names a key
    twice is never canonical: each reader may take a different one of its values.

    Raises ``ValueError`` for text that is not JSON."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = json.loads(text)  # what orjson refuses (integers beyond 64 bits) may be JSON
    if canonical_json(value) == text:
        return value, None
    try:
        json.loads(text, object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        return value, str(exc)
    return value, "key order, spacing or escapes differ"


def check_chain(conn, *, expect_head: tuple[int, str] | None = None,
                visit: Callable[[dict[str, Any]], None] | None = None) -> Iterator[str]:
    """Yield one message per broken link, altered event or event not in its canonical bytes,
    in chain order, streaming the events (one at a time in memory).

    Each event's columns must hold their types, its ``details`` must be byte-identical to the
    canonical JSON of their value, its ``hash`` that of its canonical form, and its
    ``prev_hash`` the hash of the event before it. ``visit`` is called with each event whose
    details parse (``details`` as the value), for checks that hold rows to the chain.
    ``expect_head=(length, hash)``, kept outside the archive, catches what no local check
    can: a chain cut short, or deleted and chained again from some event on."""
    prev = GENESIS_HASH
    expected_seq = 1
    last = 0
    head_at_length = None
    cursor = conn.execute(
        "SELECT seq, time, actor, action, subject, document, details, prev_hash, hash "
        "FROM events ORDER BY seq")
    for row in cursor:
        event = dict(zip(EVENT_FIELDS + ("hash",), row))
        seq = event["seq"]
        try:
            for column, types in _EVENT_TYPES:
                if not isinstance(event[column], types) or isinstance(event[column], bool):
                    yield (f"event {seq}: {column} holds {type(event[column]).__name__} "
                           f"{_short(event[column])}, not {' or '.join(_TYPE_NAMES[t] for t in types)}")
            if seq != expected_seq:
                yield f"event {expected_seq}: missing (the chain jumps to {seq})"
            if event["prev_hash"] != prev:
                yield f"event {seq}: prev_hash does not match the hash of event {seq - 1}"
            try:
                details, not_canonical = parse_details(event["details"])
            except (ValueError, TypeError):
                yield f"event {seq}: details are not valid JSON"
            else:
                if not_canonical:
                    yield (f"event {seq}: details are not byte-identical to their canonical form "
                           f"({not_canonical})")
                if sha256_text(_canonical_event(event, canonical_json(details))) != event["hash"]:
                    yield f"event {seq}: hash mismatch (the event was altered)"
                if visit is not None:
                    visit({**event, "details": details})
        except Exception as exc:  # any value of any type: a problem to report, never a crash
            yield f"event {seq}: could not be checked ({type(exc).__name__}: {exc})"
        prev = event["hash"]
        if isinstance(seq, int):
            expected_seq = seq + 1
            last = max(last, seq)
            if expect_head is not None and seq == expect_head[0]:
                head_at_length = event["hash"]
    if expect_head is not None:
        length, head = expect_head
        if length == 0:
            if head != GENESIS_HASH:
                yield f"expected head: an empty chain's head is {GENESIS_HASH[:12]}..., not {head[:12]}..."
        elif head_at_length is None:
            yield (f"expected head: the chain has {last} events, not the {length} expected "
                   "(cut short, or another archive)")
        elif head_at_length != head:
            yield (f"expected head: event {length} has hash {str(head_at_length)[:16]}..., "
                   f"not {head[:16]}... (the chain was rewritten)")


_TYPE_NAMES = {int: "an integer", str: "text", type(None): "NULL"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
