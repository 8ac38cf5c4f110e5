"""A document's metadata over time: title, source and restriction, changed only by events.

The ``documents`` row keeps what was recorded at ingest and never changes. Every later change
is an event in the chain (``restrict``, ``unrestrict``, ``edit``) whose details carry the whole
state after it (``title``, ``source``, ``restricted``) and the ``reason``; the ingest event
carries the first state. The current state is that of the latest of these events
(the ``document_state`` view, :data:`stet.store.STATE_ACTIONS`), so the chain is the record:
``stet verify`` holds the rows to it, and publishing reads restriction from it.

Restricting a message hides its attachments with it (they are withheld wherever it is).
Unrestricting a message also unrestricts each attachment that was restricted only because it
came in the restricted message (its latest state is still its ingest); an attachment that was
restricted on its own stays restricted.
"""

from __future__ import annotations

import json
from typing import Any

from . import timeutil
from .errors import InvalidInput, arg
from .provenance import Chain
from .store import STATE_ACTIONS_SQL


def current(conn, document: int) -> dict[str, Any]:
    """The document's current title, source and restriction (from the chain)."""
    row = conn.execute("SELECT title, source, restricted, event FROM document_state "
                       "WHERE document = ?", (document,)).fetchone()
    title, source, restricted, event = row
    return {"title": title, "source": source, "restricted": bool(restricted), "event": event}


def history(conn, document: int) -> list[dict[str, Any]]:
    """Every state the document's metadata had, oldest first: the ingest, then each change,
    with who made it, when, and why."""
    out = []
    for seq, time, actor, action, details in conn.execute(
        "SELECT seq, time, actor, action, details FROM events INDEXED BY events_document_state "
        f"WHERE document = ? AND action IN {STATE_ACTIONS_SQL} ORDER BY seq", (document,)
    ):
        value = json.loads(details)
        out.append({"event": seq, "time": time, "by": actor, "action": action,
                    "title": value.get("title"), "source": value.get("source"),
                    "restricted": bool(value.get("restricted", True)),
                    "reason": value.get("reason")})
    return out


def _reason(reason: str | None) -> str:
    if reason is None or not str(reason).strip():
        raise InvalidInput(f"a reason is required ({arg('reason')}): it is kept in the record")
    return str(reason).strip()


def _append(chain: Chain, document: int, action: str, state: dict[str, Any], *, by: str,
            reason: str, time: str) -> dict[str, Any]:
    return chain.append(
        time=time, actor=by, action=action, subject=f"document:{document}", document=document,
        details={"title": state["title"], "source": state["source"],
                 "restricted": state["restricted"], "reason": reason},
    )


def restrict(conn, chain: Chain, document: int, *, by: str, reason: str | None) -> dict[str, Any]:
    """Withhold the document (and its attachments) from every public snapshot and export."""
    reason = _reason(reason)
    state = current(conn, document)
    if state["restricted"]:
        raise InvalidInput(f"document {document} is already restricted")
    state["restricted"] = True
    event = _append(chain, document, "restrict", state, by=by, reason=reason,
                    time=timeutil.iso(timeutil.now()))
    return {"document": document, "event": event["seq"], "restricted": True, "changed": [document]}


def unrestrict(conn, chain: Chain, document: int, *, by: str,
               reason: str | None) -> dict[str, Any]:
    """Make the document public again: the next snapshot publishes it (with the attachments
    that were restricted only because it was)."""
    reason = _reason(reason)
    state = current(conn, document)
    if not state["restricted"]:
        raise InvalidInput(f"document {document} is not restricted")
    withheld_by = _restricted_ancestor(conn, document)
    if withheld_by is not None:
        raise InvalidInput(f"document {document} is an attachment of document {withheld_by}, "
                           f"which is restricted: unrestrict {withheld_by} first")
    time = timeutil.iso(timeutil.now())
    state["restricted"] = False
    events = [_append(chain, document, "unrestrict", state, by=by, reason=reason, time=time)]
    changed = [document]
    for child in _inherited(conn, document):
        child_state = current(conn, child)
        child_state["restricted"] = False
        events.append(_append(chain, child, "unrestrict", child_state, by=by, time=time,
                              reason=f"attachment of document {document}: {reason}"))
        changed.append(child)
    return {"document": document, "event": events[0]["seq"], "restricted": False,
            "changed": changed}


def edit(conn, chain: Chain, document: int, *, by: str, reason: str | None,
         title: str | None = None, source: str | None = None) -> dict[str, Any]:
    """Correct the title and/or the source; the old values stay in the record. An empty
    source clears it; a title cannot be empty."""
    reason = _reason(reason)
    if title is None and source is None:
        raise InvalidInput(f"nothing to edit: give {arg('title')} and/or {arg('source')}")
    state = current(conn, document)
    if title is not None:
        if not title.strip():
            raise InvalidInput("a title cannot be empty")
        state["title"] = title
    if source is not None:
        state["source"] = source if source.strip() else None
    before = current(conn, document)
    if (state["title"], state["source"]) == (before["title"], before["source"]):
        raise InvalidInput(f"document {document} already has that title and source")
    event = _append(chain, document, "edit", state, by=by, reason=reason,
                    time=timeutil.iso(timeutil.now()))
    return {"document": document, "event": event["seq"], "title": state["title"],
            "source": state["source"], "changed": [document]}


def _restricted_ancestor(conn, document: int) -> int | None:
    """The nearest message above the document that is restricted, if any."""
    row = conn.execute(
        "WITH RECURSIVE up(id, depth) AS (SELECT parent, 1 FROM documents WHERE id = ? "
        "UNION SELECT d.parent, up.depth + 1 FROM documents d JOIN up ON d.id = up.id "
        "WHERE d.parent IS NOT NULL) "
        "SELECT up.id FROM up JOIN document_state s ON s.document = up.id "
        "WHERE s.restricted ORDER BY up.depth LIMIT 1", (document,)).fetchone()
    return row[0] if row else None


def _inherited(conn, document: int) -> list[int]:
    """Attachments, at any depth, whose only restriction is the one they were ingested with
    (their latest state event is their ingest, and it says restricted)."""
    rows = conn.execute(
        "WITH RECURSIVE down(id) AS (SELECT id FROM documents WHERE parent = ? "
        "UNION SELECT d.id FROM documents d JOIN down ON d.parent = down.id) "
        "SELECT s.document FROM down JOIN document_state s ON s.document = down.id "
        "JOIN events e ON e.seq = s.event WHERE s.restricted AND e.action = 'ingest' "
        "ORDER BY s.document", (document,)).fetchall()
    return [row[0] for row in rows]
