"""The workbench's pages: what the public document page gains for staff, and the documents list.

The document page itself is the public one (:func:`stet.datasette_plugin.views.document_page`)
with, for a logged-in account (:func:`stet.datasette_plugin.views.staff`): restricted
documents, marked as such; the form that a selection in ``#document-text`` opens
(``form#annotate``: body, layer chosen or created, tags, motivation) for an annotator or
above; and on each current annotation the buttons the account's role allows
(:func:`actions`). The buttons only save a click: every write goes to the JSON API
(:mod:`stet.workbench.api`), which checks role and ownership itself, with the session cookie
and Datasette's CSRF token (``workbench.js``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from datasette.utils.asgi import NotFound, Response

from .. import accounts
from ..annotations.layers import layers as layer_list
from ..annotations.schema import MOTIVATIONS
from ..datasette_plugin import marks
from .app import is_workbench


def may_change(actor: dict[str, Any], annotation: dict[str, Any]) -> bool:
    """Whether ``actor`` may revise or retract ``annotation``: an editor or above anyone's,
    an annotator only what they created (the API checks the same, on the server)."""
    role = actor.get("role")
    if accounts.allows(role, "editor"):
        return True
    return accounts.allows(role, "annotator") and annotation.get("creator") == actor.get("id")


def actions(actor: dict[str, Any], annotation: dict[str, Any]) -> str:
    """The buttons of one annotation in the list: reply (annotator or above), revise and
    retract (:func:`may_change`). Each carries what the form needs, escaped."""
    if not accounts.allows(actor.get("role"), "annotator"):
        return ""
    esc = marks.escape
    ann_id = int(annotation["id"])
    buttons = [f'<button type="button" class="reply" data-action="reply" '
               f'data-annotation="{ann_id}">reply</button>']
    if may_change(actor, annotation):
        tags = annotation["tags"] if annotation["tags"] else "[]"
        buttons.append(
            f'<button type="button" class="revise" data-action="revise" data-annotation="{ann_id}" '
            f'data-body="{esc(annotation["body"])}" data-tags="{esc(tags)}" '
            f'data-motivation="{esc(annotation["motivation"])}">revise</button>')
        buttons.append(f'<button type="button" class="retract" data-action="retract" '
                       f'data-annotation="{ann_id}">retract</button>')
    return '<span class="stet-actions">' + "".join(buttons) + "</span>"


async def document_extras(datasette, db, request, context: dict[str, Any]) -> dict[str, Any]:
    """What the workbench adds to a document page's context for a logged-in account."""
    actor = request.actor
    layers = sorted((await db.execute_fn(
        lambda conn: [layer["name"] for layer in layer_list(conn)])))
    return {**context, "workbench": {
        "actor": actor["id"],
        "role": actor["role"],
        "can_write": accounts.allows(actor["role"], "annotator") and not context.get("at_iso"),
        "layers": layers,
        "motivations": MOTIVATIONS,
        "api": datasette.urls.path("/-/api/annotations"),
    }}


PAGE = 100

DOCUMENTS_SQL = """
SELECT d.id, s.title, d.filename, d.media_type, d.size, d.ingested_at, d.parent, s.restricted,
       (SELECT count(*) FROM annotations a WHERE a.document = d.id AND a.status = 'active')
         AS annotations
FROM documents d JOIN document_state s ON s.document = d.id
WHERE d.id > :after
ORDER BY d.id
LIMIT :limit
"""


async def documents_page(datasette, request):
    """Every document of the live archive, restricted ones marked, 100 a page (``?after=ID``)."""
    from ..datasette_plugin.views import database, staff

    if not is_workbench(datasette) or not staff(datasette, request):
        raise NotFound("No such page")
    db = database(datasette)
    try:
        after = max(0, int(request.args.get("after", "0") or 0))
    except ValueError:
        return Response.text("after is a document id", status=400)
    rows = [dict(r) for r in (await db.execute(
        DOCUMENTS_SQL, {"after": after, "limit": PAGE + 1})).rows]
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    # an attachment of a restricted document is restricted with it
    restricted_parents = {r["id"] for r in rows if r["restricted"]}
    for row in rows:
        row["restricted"] = bool(row["restricted"]) or row["parent"] in restricted_parents
        row["url"] = datasette.urls.path(f"/-/documents/{row['id']}")
    if any(r["parent"] and not r["restricted"] for r in rows):
        await _inherit(db, rows)
    context = {
        "documents": rows,
        "next_url": datasette.urls.path("/-/documents") + "?" + urlencode({"after": rows[-1]["id"]})
        if more and rows else None,
        "first_url": datasette.urls.path("/-/documents") if after else None,
        "counts": await _counts(db),
    }
    return Response.html(await datasette.render_template("stet_documents.html", context,
                                                         request=request))


async def _inherit(db, rows) -> None:
    """Mark attachments whose parent (at any depth) is restricted now."""
    from ..datasette_plugin.views import PUBLIC

    for row in rows:
        if row["parent"] and not row["restricted"]:
            public = (await db.execute(f"SELECT {PUBLIC}", {"doc": row["id"]})).rows[0][0]
            row["restricted"] = not public


async def _counts(db) -> dict[str, int]:
    total, restricted = (await db.execute(
        "SELECT count(*), coalesce(sum(restricted), 0) FROM document_state")).rows[0]
    return {"documents": total, "restricted": restricted}
