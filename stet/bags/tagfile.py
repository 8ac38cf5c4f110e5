"""The stet tag file of a bag (:data:`TAG_FILE`): one JSON object a line, one per payload
file, in payload order: the document's record as ingested, its current state from the chain,
its provenance events and its text. Written on export (:func:`tag_record`); read back and
checked on ingest (:func:`read_records`), where it decides the order the payload is ingested
in (:func:`payload_order`)."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from .. import content, provenance
from ..errors import InvalidInput
from ..system import open_regular

#: The stet tag file in an exported bag: one JSON object per document, in payload order.
TAG_FILE = "stet-documents.jsonl"

_OPTIONAL_TEXT = (str, type(None))
_OPTIONAL_ID = (int, type(None))
#: What each key of a record's ``document`` must hold.
_DOCUMENT_KEYS = {
    "id": int, "sha256": str, "title": _OPTIONAL_TEXT, "filename": str, "source": _OPTIONAL_TEXT,
    "restricted": bool, "ingested_by": str, "ingested_at": str, "parent": _OPTIONAL_ID,
    "supersedes": _OPTIONAL_ID,
}
_STATE_KEYS = {"title": _OPTIONAL_TEXT, "source": _OPTIONAL_TEXT, "restricted": bool}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def read_records(bag, path: str, payload: list[str], prefix: str) -> dict[str, dict[str, Any]]:
    """The records of :data:`TAG_FILE`, by payload path; none when the bag has no such file.
    Raises InvalidInput, naming the line, unless it is a regular file covered by a tag
    manifest with one well-formed record for each payload file and nothing else."""
    location = os.path.join(path, TAG_FILE)
    try:
        info = os.lstat(location)
    except FileNotFoundError:
        return {}
    where = f"{prefix}: {TAG_FILE}"
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{where}: not a regular file")
    if TAG_FILE not in bag.entries:
        raise InvalidInput(f"{where}: not in a tag manifest, so nothing vouches for it")
    expected = set(payload)
    records: dict[str, dict[str, Any]] = {}
    ids: set[int] = set()
    with open_regular(location) as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"), object_pairs_hook=_unique_keys)
                problem = _record_problem(record, expected, records, ids, bag.entries)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                problem = f"not a JSON object ({type(exc).__name__}: {exc})"[:200]
            if problem:
                raise InvalidInput(f"{where}: line {number}: {problem}")
            record.pop("text", None)  # the text is extracted again from the bytes
            records[record["payload"]] = record
            ids.add(record["document"]["id"])
    missing = sorted(expected - set(records))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InvalidInput(f"{where}: no record for {shown}")
    return records


def _record_problem(record: Any, expected: set[str], records: dict[str, Any], ids: set[int],
                    entries: dict[str, dict[str, str]]) -> str | None:
    """What is wrong with one record of :data:`TAG_FILE`, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    name = record.get("payload")
    if not isinstance(name, str) or name not in expected:
        return f"payload {name!r} is not a payload file of the bag"
    if name in records:
        return f"a second record for {name}"
    document = record.get("document")
    if not isinstance(document, dict):
        return f"{name}: no document record"
    for key, kind in _DOCUMENT_KEYS.items():
        value = document.get(key)
        if key not in document or not isinstance(value, kind) or (
                isinstance(value, bool) and kind is not bool):
            return f"{name}: document.{key} is missing or malformed"
    if document["id"] in ids:
        return f"{name}: a second record for document {document['id']}"
    manifest = entries.get(name, {}).get("sha256")
    if manifest is not None and document["sha256"] != manifest:
        return f"{name}: document.sha256 is not the payload file's SHA-256"
    state = record.get("state")
    if state is not None:  # bags from before stet kept the current state have none
        if not isinstance(state, dict):
            return f"{name}: state is not an object"
        for key, kind in {**_STATE_KEYS, "hidden": bool}.items():
            value = state.get(key)
            if key not in state or not isinstance(value, kind) or (
                    isinstance(value, bool) and kind is not bool):
                return f"{name}: state.{key} is missing or malformed"
    events = record.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return f"{name}: events is not a list of objects"
    return None


def record_state(record: dict[str, Any]) -> dict[str, Any]:
    """A record's current state: ``state`` as exported, or (from an older stet) the record."""
    state = record.get("state")
    if state is None:
        document = record["document"]
        return {"title": document["title"], "source": document["source"],
                "restricted": document["restricted"], "hidden": document["restricted"]}
    return state


def payload_order(payload: list[str], records: dict[str, dict[str, Any]]) -> list[str]:
    """The payload in the order to ingest it: as given (sorted), except that each message in
    the bag comes before its attachments, so that extracting the message creates each
    attachment with its link to it (the attachment's own file is then a duplicate).

    One exception keeps restriction first: an attachment restricted on its own whose message
    is public would be created public by its message's extraction. It goes first instead,
    and is ingested restricted as a document of its own (its message is then recorded in its
    event's ``original.parent`` only)."""
    if not records:
        return payload
    by_id = {record["document"]["id"]: name for name, record in records.items()}

    def parent_of(name: str) -> str | None:
        return by_id.get(records[name]["document"]["parent"])

    def alone(name: str) -> bool:
        parent = parent_of(name)
        return parent is not None and record_state(records[name])["restricted"] \
            and not record_state(records[parent])["hidden"]

    order: list[str] = []
    placed: set[str] = set()
    first = [name for name in payload if alone(name)]
    for name in first + payload:
        chain: list[str] = []
        current: str | None = name
        while current is not None and current not in placed and current not in chain:
            chain.append(current)
            current = None if alone(chain[-1]) else parent_of(chain[-1])
        for ancestor in reversed(chain):
            placed.add(ancestor)
            order.append(ancestor)
    return order


#: A document's row as ingested (the ``documents`` table never changes).
_AS_INGESTED = ("id", "sha256", "title", "filename", "media_type", "size", "source",
                "restricted", "ingested_by", "ingested_at", "parent", "supersedes")


def _restricted_submission(event: dict[str, Any]) -> bool:
    """An event recording a restricted submission of bytes already archived (a public
    document's ``ingest-duplicate`` asked to be restricted): what it records (path, source,
    submitter, bag) stays private like the submission."""
    return event["action"] == "ingest-duplicate" and bool(event["details"].get("restricted"))


def tag_record(conn, doc_id: int, hidden: set[int],
                include_restricted: bool) -> dict[str, Any]:
    """One document's line of :data:`TAG_FILE`: its row as ingested (``document``), its
    current title, source and restriction from the chain (``state``; ``hidden`` when it is
    restricted or an attachment of a restricted document), its text and its events."""
    row = conn.execute(
        f"SELECT {', '.join('d.' + c for c in _AS_INGESTED)}, s.title, s.source, s.restricted, "
        "t.sha256, t.length, t.extractor, t.extractor_version, t.encoding, t.warning "
        "FROM documents d JOIN document_state s ON s.document = d.id "
        "LEFT JOIN texts t ON t.document = d.id WHERE d.id = ?", (doc_id,)).fetchone()
    document = dict(zip(_AS_INGESTED, row))
    document["restricted"] = bool(document["restricted"])
    title, source, restricted, *text = row[len(_AS_INGESTED):]
    events = list(provenance.log(conn, document=doc_id))
    if not include_restricted:
        events = [event for event in events if not _restricted_submission(event)]
    return {
        "document": document,
        "state": {"title": title, "source": source, "restricted": bool(restricted),
                  "hidden": doc_id in hidden},
        "text": {
            **dict(zip(("sha256", "length", "extractor", "extractor_version", "encoding",
                        "warning"), text)),
            "text": content.text(conn, doc_id),
        },
        "events": events,
    }
