"""The plugin's pages: a document with its marks, its raw bytes, and search.

Every query here hides restricted documents (and their attachments) itself, so the pages stay
safe even on a Datasette pointed at a live archive; ``stet serve`` serves a public snapshot
that holds nothing restricted in the first place. Only on a workbench, for a logged-in
account (:func:`staff`), do they show restricted documents, marked as such, and the document
page offers writing (:mod:`stet.workbench.pages`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from typing import Any
from urllib.parse import quote, urlencode

from datasette.utils import sqlite_timelimit
from datasette.utils.asgi import NotFound, Response
from markupsafe import Markup

from .. import blobs, timeutil
from ..display import download_name, shown
from ..errors import StetError
from ..lru import KEPT_BY_RESPONSE_CACHE, LRU
from ..publish import fold
from ..annotations.schema import state_at
from ..store import STATE_ACTIONS_SQL
from . import highlight, marks

#: A document is public when neither it nor any ancestor is restricted now, by the event
#: chain (the ``document_state`` view), whatever its ``documents`` row says.
PUBLIC = """NOT EXISTS (
    WITH RECURSIVE up(id) AS (SELECT :doc UNION SELECT parent FROM documents, up
                               WHERE documents.id = up.id AND parent IS NOT NULL)
    SELECT 1 FROM document_state WHERE document IN up AND restricted)"""

DOCUMENT_SQL = f"""
SELECT d.id, d.sha256, s.title, d.filename, d.media_type, d.size, s.source, d.ingested_by,
       d.ingested_at, d.parent, d.supersedes, t.text, t.sha256 AS text_sha256, t.length,
       t.extractor, t.extractor_version, NOT {PUBLIC} AS restricted
FROM documents d JOIN document_state s ON s.document = d.id
LEFT JOIN texts t ON t.document = d.id
WHERE d.id = :doc AND (:staff OR {PUBLIC})
"""

#: Every title and source the document had (its ingest, then each edit), with who and why.
METADATA_HISTORY_SQL = f"""
SELECT seq, time, actor, action, json_extract(details, '$.title') AS title,
       json_extract(details, '$.source') AS source, json_extract(details, '$.reason') AS reason
FROM events INDEXED BY events_document_state
WHERE document = :doc AND action IN {STATE_ACTIONS_SQL}
ORDER BY seq
"""

ANNOTATION_COLUMNS = ("id, layer, start, \"end\", exact, body, motivation, tags, creator, author, "
                      "created, modified, revision, reply_to")

CURRENT_SQL = f"""
SELECT {ANNOTATION_COLUMNS} FROM annotations
WHERE document = :doc AND status = 'active' ORDER BY start, id
"""

#: The annotations as they stood at :at: the one at-instant builder (stet.annotations.schema).
AT_SQL = f"""
SELECT {ANNOTATION_COLUMNS.replace('id, ', 'annotation AS id, ', 1)}
FROM ({state_at(':at', document=':doc')}) r
WHERE status = 'active'
ORDER BY start, annotation
"""


def staff(datasette, request) -> bool:
    """Whether the request comes from a logged-in account on a workbench: only then is
    restricted material shown (the public site has no accounts)."""
    from ..workbench import is_workbench
    from ..accounts import ROLES

    actor = getattr(request, "actor", None) if request is not None else None
    return is_workbench(datasette) and isinstance(actor, dict) and actor.get("role") in ROLES


def database(datasette):
    """The archive's database: the one named ``archive``, else the first one served."""
    if "archive" in datasette.databases:
        return datasette.get_database("archive")
    names = [n for n in datasette.databases if n not in ("_internal", "_memory")]
    if not names:
        raise NotFound("No archive is served here")
    return datasette.get_database(names[0])


#: What the archive holds: its public documents, their current annotations, and the layers.
HOLDINGS_SQL = {
    "documents": f"SELECT count(*) FROM documents d WHERE {PUBLIC.replace(':doc', 'd.id')}",
    "annotations": "SELECT count(*) FROM annotations a WHERE status = 'active' AND "
                   + PUBLIC.replace(":doc", "a.document"),
    "layers": "SELECT count(*) FROM layers",
}


async def holdings(datasette, *, everything: bool = False) -> dict[str, int] | None:
    """How many documents, current annotations and layers the archive holds (public ones
    only, or ``everything`` for staff on a workbench), for the index page; None when no stet
    archive is served. A snapshot (immutable) holds nothing restricted, so its rows are
    counted as they are."""
    try:
        db = database(datasette)
        tables = set(await db.table_names())
        if not {"documents", "annotations", "layers"} <= tables:
            return None
        counts = {}
        for name, sql in HOLDINGS_SQL.items():
            if not db.is_mutable or everything:
                sql = f"SELECT count(*) FROM {name}" + (
                    " WHERE status = 'active'" if name == "annotations" else "")
            counts[name] = (await db.execute(sql)).rows[0][0]
        return counts
    except (NotFound, sqlite3.Error):  # no archive served, or not one this version reads
        return None


#: Rendered document pages of an immutable database, within a budget of characters: the
#: file cannot change, so neither can the pages. Not for a request whose whole answer
#: ``stet serve``'s response cache keeps (:mod:`stet.lru`): a page is held once.
_pages = LRU(64_000_000)


def _identity(path):
    """Which file, in which version (an immutable file is replaced, never changed in place)."""
    info = os.stat(path)
    return (os.path.abspath(path), info.st_ino, info.st_size, info.st_mtime_ns)


async def document_page(datasette, request):
    db = database(datasette)
    doc_id = int(request.url_vars["id"])
    at_text = request.args.get("at", "").strip()
    at_us = None
    if at_text:
        try:
            at_us = timeutil.parse_micros(at_text)
        except StetError as exc:
            return Response.html(f"<p>{marks.escape(exc)}</p>", status=400)
    is_staff = staff(datasette, request)
    key = None if (db.is_mutable or db.is_memory or request.scope.get(KEPT_BY_RESPONSE_CACHE)) \
        else (_identity(db.path), doc_id, at_us)
    cached = _pages.get(key) if key else None
    if cached is None:
        context = await _document_context(datasette, db, doc_id, at_us, staff=is_staff,
                                          actor=request.actor if is_staff else None)
        if context is None:
            raise NotFound("No such document")
        if key:
            _pages.put(key, context, len(context["text_html"]) + len(context["annotation_list"]))
    else:
        context = cached
    context = {**context, "at": at_text}
    if is_staff:
        from ..workbench import pages

        context = await pages.document_extras(datasette, db, request, context)
    return Response.html(
        await datasette.render_template("stet_document.html", context, request=request)
    )


async def _document_context(datasette, db, doc_id: int, at_us: int | None, *,
                            staff: bool = False, actor: dict | None = None):
    found = await db.execute_fn(functools.partial(
        _document_rows, doc_id, at_us, staff, datasette.setting("sql_time_limit_ms")))
    if found is None:
        return None
    doc, changes, annotations, versions, layers = found
    for version in (*versions["newer"], *([versions["older"]] if versions["older"] else [])):
        version["url"] = datasette.urls.path(f"/-/documents/{version['id']}")
    orphans = _orphaned(annotations)
    counts: dict[int, int] = {}
    for a in annotations:
        counts[a["layer"]] = counts.get(a["layer"], 0) + 1
    for layer in layers:
        layer["css_colour"] = marks.layer_colour(layer["id"], layer["colour"])
        layer["count"] = counts.get(layer["id"], 0)
    text = doc["text"] or ""
    body = marks.render_text(text, ((a["id"], a["layer"], a["start"], a["end"]) for a in annotations
                                    if a["start"] is not None))
    names = {layer["id"]: layer["name"] for layer in layers}
    placed = [a for a in annotations if a["id"] not in orphans]
    left = [a for a in annotations if a["id"] in orphans]
    context = {
        "doc": doc,
        "database": db.name,
        "direction": marks.direction(text),
        "text_html": Markup(body),
        "annotation_list": Markup(_annotation_list(datasette, db.name, placed, names,
                                                   actor=actor if at_us is None else None)),
        "orphan_list": Markup(_annotation_list(datasette, db.name, left, names,
                                               actor=actor if at_us is None else None)),
        "orphan_count": sum(1 for a in left if a["reply_to"] is None),
        **versions,
        "layers": layers,
        "layer_css": Markup(marks.layer_css((layer["id"], layer["css_colour"]) for layer in layers)),
        "annotation_count": len(annotations),
        "at_iso": timeutil.from_micros(at_us) if at_us is not None else None,
        "raw_url": datasette.urls.path(f"/-/documents/{doc_id}/raw"),
        "row_url": datasette.urls.row(db.name, "documents", str(doc_id)),
        "provenance_url": datasette.urls.query(db.name, "document_provenance")
        + "?" + urlencode({"document": doc_id}),
        "page_url": datasette.urls.path(f"/-/documents/{doc_id}"),
        "parent_url": datasette.urls.path(f"/-/documents/{doc['parent']}") if doc["parent"] else None,
        # shown only when the metadata changed after the ingest
        "metadata_history": changes if len(changes) > 1 else [],
    }
    return context


#: The versions a page names: the newer ones (superseding it) and the older one it supersedes,
#: each only where the reader may see it.
NEWER_SQL = f"""
SELECT d.id, s.title FROM documents d JOIN document_state s ON s.document = d.id
WHERE d.supersedes = :doc AND d.parent IS NULL AND (:staff OR {PUBLIC.replace(':doc', 'd.id')})
ORDER BY d.id
"""


def _document_rows(doc_id: int, at_us: int | None, staff: bool, limit_ms: int, conn):
    """What a document page shows, read in one visit to the database's thread (each
    ``db.execute`` is a round trip through it: eight of them were a tenth of a page's time),
    under the time limit Datasette puts on a query: the document, its metadata changes,
    its annotations (current, or as they stood at ``at_us``, each carried one with its
    ``anchoring`` and ``score``), its versions and its layers; None when there is no such
    document for this reader."""
    with sqlite_timelimit(conn, limit_ms):
        rows = conn.execute(DOCUMENT_SQL, {"doc": doc_id, "staff": staff}).fetchall()
        if not rows:
            return None
        doc = dict(rows[0])
        changes = [dict(r) for r in conn.execute(METADATA_HISTORY_SQL, {"doc": doc_id})]
        if at_us is None:
            result = conn.execute(CURRENT_SQL, {"doc": doc_id})
        else:
            result = conn.execute(AT_SQL, {"doc": doc_id, "at": at_us})
        annotations = [dict(r) for r in result]
        versions = _versions(conn, doc, staff)
        if versions.pop("has_anchoring"):
            _anchoring(conn, annotations)
        layer_ids = sorted({a["layer"] for a in annotations})
        layers = []
        if layer_ids:
            placeholders = ", ".join("?" * len(layer_ids))
            layers = [dict(r) for r in conn.execute(
                f"SELECT id, name, description, colour FROM layers WHERE id IN ({placeholders}) "
                "ORDER BY id", layer_ids)]
    return doc, changes, annotations, versions, layers


def _versions(conn, doc: dict, staff: bool) -> dict:
    """``newer`` (the documents superseding this one), ``older`` (the one it supersedes),
    each ``{"id", "title"}``, where the reader may see them; ``has_anchoring``: whether the
    database records carried annotations (a snapshot made before versions does not)."""
    newer = [dict(r) for r in conn.execute(NEWER_SQL, {"doc": doc["id"], "staff": staff})]
    older = None
    if doc["supersedes"] is not None:
        rows = conn.execute(
            f"SELECT d.id, s.title FROM documents d JOIN document_state s ON s.document = d.id "
            f"WHERE d.id = :doc AND (:staff OR {PUBLIC})",
            {"doc": doc["supersedes"], "staff": staff}).fetchall()
        older = dict(rows[0]) if rows else None
    anchoring = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'annotation_anchoring'").fetchone()
    return {"newer": newer, "older": older, "has_anchoring": anchoring is not None}


def _anchoring(conn, annotations) -> None:
    """Each carried annotation's ``anchoring`` and ``score`` (None for the others)."""
    for a in annotations:
        a["anchoring"] = a["score"] = None
    ids = [a["id"] for a in annotations]
    by_id = {a["id"]: a for a in annotations}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = conn.execute(
            "SELECT annotation, anchoring, score FROM anchoring_state "
            f"WHERE annotation IN ({', '.join('?' * len(chunk))})", chunk)
        for annotation, anchoring, score in rows:
            by_id[annotation].update(anchoring=anchoring, score=score)


def _orphaned(annotations) -> set:
    """The ids of annotations with no span that are not replies (carried to this version,
    their passage gone), and of every reply under them."""
    orphans = {a["id"] for a in annotations if a["start"] is None and a["reply_to"] is None}
    grown = True
    while grown:
        grown = False
        for a in annotations:
            if a["reply_to"] in orphans and a["id"] not in orphans:
                orphans.add(a["id"])
                grown = True
    return orphans


def threads(annotations):
    """The annotations in reading order as ``("open"|"close", annotation, has_replies)``: each
    annotation opens, its replies follow inside it (any depth, in time order), then it closes.
    An annotation whose parent is not shown (retracted, or made after ``?at=``) starts a
    thread of its own; otherwise threads keep the order given (by span)."""
    by_id = {a["id"]: a for a in annotations}
    replies: dict[int, list] = {}
    roots = []
    for a in annotations:
        parent = a["reply_to"]
        if parent is not None and parent in by_id and parent != a["id"]:
            replies.setdefault(parent, []).append(a)
        else:
            roots.append(a)
    for children in replies.values():
        children.sort(key=lambda r: (r["created"] or "", r["id"]))
    seen: set = set()
    # a stack, not recursion: a thread can be deeper than Python's recursion limit
    stack = [(a, False) for a in reversed(roots)]
    while stack:
        a, done = stack.pop()
        children = replies.get(a["id"], [])
        if done:
            yield "close", a, bool(children)
            continue
        if a["id"] in seen:
            continue
        seen.add(a["id"])
        yield "open", a, bool(children)
        stack.append((a, True))
        stack.extend((r, False) for r in reversed(children))


def _annotation_list(datasette, db_name, annotations, layer_names, *, actor=None) -> str:
    """The ``<li>`` of every annotation, each reply nested under its parent (``<ol
    class="replies">``). With ``actor`` (a workbench account, on the current annotations),
    each offers the buttons its role allows (:func:`stet.workbench.pages.actions`)."""
    from ..workbench.pages import actions
    esc = marks.escape
    history = datasette.urls.query(db_name, "annotation_history")
    names = {layer: esc(shown(name)) for layer, name in layer_names.items()}
    out = []
    for step, a, has_replies in threads(annotations):
        if step == "close":
            out.append(("</ol>" if has_replies else "") + "</li>")
            continue
        ann_id, layer = int(a["id"]), int(a["layer"])
        tags = json.loads(a["tags"]) if a["tags"] and a["tags"] != "[]" else []
        span = f'{a["start"]}–{a["end"]}' if a["start"] is not None else \
            f'reply to {a["reply_to"]}' if a["reply_to"] is not None else "no span"
        carried = a.get("anchoring")
        if carried:
            score = f" {float(a['score']):.2f}" if carried == "fuzzy" else ""
            span += (f' <span class="stet-anchoring {carried}" title="carried from the older '
                     f'version: placed {carried}{score}">{carried}{score}</span>')
        out.append(
            f'<li id="annotation-{ann_id}" class="l{layer}" data-layer="{layer}">'
            f'<b>{names.get(layer, layer)}</b> <i>{esc(shown(a["author"]))}</i> '
            f'<time>{esc(a["modified"])}</time> <small>{span} r{int(a["revision"])}</small>'
            + (f'<q>{esc(a["exact"])}</q>' if a["exact"] else "")
            + f'<span dir="auto">{esc(a["body"])}</span>'
            + "".join(f'<em>{esc(shown(t))}</em>' for t in tags)
            + f'<a href="{history}?annotation={ann_id}">history</a>'
            + (actions(actor, a) if actor is not None else "")
            + ('\n<ol class="replies">' if has_replies else "")
        )
    return "\n".join(out)


async def raw_bytes(datasette, request):
    """The document's raw bytes, streamed chunk by chunk, as a download."""
    db = database(datasette)
    doc_id = int(request.url_vars["id"])
    rows = (await db.execute(
        "SELECT sha256, filename, media_type, size FROM documents d "
        f"WHERE d.id = :doc AND (:staff OR {PUBLIC})",
        {"doc": doc_id, "staff": staff(datasette, request)})).rows
    if not rows:
        raise NotFound("No such document")
    sha, filename, media_type, size = rows[0]
    blob = dict((await db.execute("SELECT * FROM blobs WHERE sha256 = ?", [sha])).rows[0])
    seqs = [r[0] for r in (await db.execute(
        "SELECT seq FROM blob_chunks WHERE sha256 = ? ORDER BY seq", [sha])).rows]
    placed = await _object_of(db, sha)

    async def stream(send):
        if blob.get("storage") == "text":  # the bytes are exactly the UTF-8 of the text
            (text,) = (await db.execute(
                "SELECT text FROM texts WHERE document = ?", [doc_id])).rows[0]
            await send({"type": "http.response.body", "body": text.encode("utf-8"),
                        "more_body": True})
            return
        if placed is not None:  # in the object store: streamed from it, off the event loop
            pieces = blobs.read_object(placed)
            while (data := await asyncio.to_thread(next, pieces, None)) is not None:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            return
        for seq in seqs:
            (data,) = (await db.execute(
                "SELECT data FROM blob_chunks WHERE sha256 = ? AND seq = ?", [sha, seq])).rows[0]
            await send({"type": "http.response.body", "body": bytes(data), "more_body": True})

    return _BytesResponse(stream, {
        "content-type": _safe_header(media_type) or "application/octet-stream",
        "content-length": str(size),
        # no control or bidirectional formatting character in the name the browser shows
        "content-disposition": "attachment; filename*=UTF-8''"
                               + quote(download_name(filename, default=sha[:12]), safe=""),
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
        "x-stet-sha256": sha,
    })


async def _object_of(db, sha: str) -> dict[str, Any] | None:
    """Where a blob is in the object store (:func:`stet.blobs.located`), or None."""
    if not (await db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blob_objects'")).rows:
        return None  # a snapshot made before object stores
    rows = (await db.execute('SELECT store, key, "offset", length FROM blob_objects '
                             "WHERE sha256 = ?", [sha])).rows
    return dict(zip(("store", "key", "offset", "length"), rows[0])) if rows else None


def _safe_header(value: str | None) -> str | None:
    if value and all(32 < ord(c) < 127 or c == " " for c in value):
        return value
    return None


class _BytesResponse:
    def __init__(self, stream_fn, headers):
        self.stream_fn = stream_fn
        self.headers = headers

    async def asgi_send(self, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [[k.encode("latin-1"), v.encode("latin-1")]
                                for k, v in self.headers.items()]})
        await self.stream_fn(send)
        await send({"type": "http.response.body", "body": b""})


# -- search -----------------------------------------------------------------------------------

#: Counting stops here: a search answers "more than 1,000" instead of counting every match.
COUNT_CAP = 1000
PAGE = 20


def fts_query(q: str) -> str:
    """Each word (or "quoted phrase") a phrase, all required; marks folded as in the index."""
    q = fold(q).replace("\u0000", "")
    if q.count('"') % 2:
        q += '"'
    terms, buf, quoted = [], [], False
    for ch in q:
        if ch == '"':
            if quoted and buf:
                terms.append("".join(buf))
            elif buf:
                terms.extend("".join(buf).split())
            buf, quoted = [], not quoted
        else:
            buf.append(ch)
    if buf:
        terms.extend("".join(buf).split())
    return " ".join('"' + t.strip() + '"' for t in terms if t.strip())


DOC_SEARCH = f"""
SELECT d.id, d.title, d.media_type, stet_snippet(t.text, :words) AS context
FROM (SELECT rowid FROM documents_fts WHERE documents_fts MATCH :q ORDER BY rowid LIMIT :limit
      OFFSET :offset) f
JOIN documents d ON d.id = f.rowid LEFT JOIN texts t ON t.document = d.id
WHERE {PUBLIC.replace(':doc', 'd.id')}
ORDER BY d.id
"""

ANN_SEARCH = f"""
SELECT a.id, a.document, a.exact, a.body, a.author, a.modified, l.name AS layer, d.title
FROM (SELECT rowid FROM annotations_fts WHERE annotations_fts MATCH :q ORDER BY rowid LIMIT :limit
      OFFSET :offset) f
JOIN annotations a ON a.id = f.rowid JOIN documents d ON d.id = a.document
JOIN layers l ON l.id = a.layer
WHERE a.status = 'active' AND {PUBLIC.replace(':doc', 'd.id')}
ORDER BY a.id
"""


async def search_page(datasette, request):
    db = database(datasette)
    q = request.args.get("q", "").strip()
    context = {"q": q, "documents": [], "annotations": [], "error": None,
               "document_count": None, "annotation_count": None, "cap": COUNT_CAP,
               "staff": staff(datasette, request), "more_url": None}
    if context["staff"]:
        await _staff_search(datasette, request, q, context)
    else:
        await _public_search(db, q, context)
    for d in context["documents"]:
        d["url"] = datasette.urls.path(f"/-/documents/{d['id']}")
        d["context_html"] = Markup(highlight.highlight(d["context"], q))
    for a in context["annotations"]:
        a["url"] = datasette.urls.path(f"/-/documents/{a['document']}") + f"#annotation-{a['id']}"
        a["exact_html"] = Markup(highlight.highlight(a["exact"], q))
        a["body_html"] = Markup(highlight.highlight(a["body"], q))
    context["database"] = db.name
    context["table_search"] = {
        "documents": datasette.urls.table(db.name, "documents") + "?" + urlencode({"_search": q}),
        "annotations": datasette.urls.table(db.name, "annotations") + "?" + urlencode({"_search": q}),
    }
    return Response.html(
        await datasette.render_template("stet_search.html", context, request=request)
    )


async def _public_search(db, q: str, context: dict) -> None:
    tables = set(await db.table_names())
    if q and not {"documents_fts", "annotations_fts"} <= tables:
        context["error"] = "Search needs the public snapshot that stet serve publishes."
    elif q and not fts_query(q):
        context.update(document_count=0, annotation_count=0)
    elif q:
        match = fts_query(q)
        params = {"q": match, "words": q, "limit": PAGE, "offset": 0}
        try:
            for kind, table, sql in (("document", "documents_fts", DOC_SEARCH),
                                     ("annotation", "annotations_fts", ANN_SEARCH)):
                count = (await db.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH :q "
                    f"LIMIT {COUNT_CAP + 1})", {"q": match})).rows[0][0]
                context[f"{kind}_count"] = count
                context[f"{kind}s"] = [dict(r) for r in (await db.execute(sql, params)).rows]
        except Exception as exc:  # a malformed FTS query
            context["error"] = f"Could not search for that: {exc}"


async def _staff_search(datasette, request, q: str, context: dict) -> None:
    """Search on a workbench, restricted documents included (and marked): the workbench's
    private index of the live archive (:class:`stet.workbench.search.StaffSearch`), brought
    up to date first. ``?offset=`` pages through both lists, 20 at a time."""
    import asyncio

    from ..workbench.search import StaffSearch

    if not q:
        return
    try:
        offset = max(0, int(request.args.get("offset", "0") or 0))
    except ValueError:
        offset = 0
    index = getattr(datasette, "_stet_search", None)
    if index is None:
        index = datasette._stet_search = StaffSearch(datasette._stet_archive_path)
    try:
        found = await asyncio.to_thread(index.search, q, limit=PAGE, offset=offset)
    except Exception as exc:  # a malformed FTS query
        context["error"] = f"Could not search for that: {exc}"
        return
    context.update(found)
    shown_up_to = offset + max(len(found["documents"]), len(found["annotations"]))
    if max(found["document_count"], found["annotation_count"]) > shown_up_to:
        context["more_url"] = "?" + urlencode({"q": q, "offset": offset + PAGE})
