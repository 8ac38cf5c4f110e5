"""The stet Datasette plugin: document pages with their marks, raw bytes, search, links.

Routes:

- ``/-/documents/<id>``: the document's provenance summary and its text, every annotated
  character inside a ``<mark>`` (``?at=TIME`` for the annotations as they stood then);
- ``/-/documents/<id>/raw``: its raw bytes, as a download;
- ``/-/search?q=``: full-text search over documents and annotations, counted up to a cap;
- ``/-/api/...``: the JSON API of the workbench (:mod:`stet.workbench`), 404 on any other
  Datasette.

Also: ``render_cell`` links documents and annotations to the document page (and the
``document`` column of any query's results), shortens SHA-256 hashes in tables, and shows names
visibly escaped (:func:`stet.display.shown`, also the ``shown`` filter of the templates),
``asgi_wrapper`` answers 405 to any method but GET, HEAD and OPTIONS on a Datasette whose
databases are all immutable (nothing there can write), and ``prepare_connection`` adds the
SQL functions ``stet_micros(time)`` (an ISO 8601 instant as integer microseconds, for
comparing with ``modified_us``), ``stet_fold(text)`` (what the full-text index sees of a
text) and ``stet_snippet(text, words)`` (the part of a text around the first of the words, as
the search page shows it) to every connection, so canned queries can use them.
"""

from __future__ import annotations

import sqlite3

from datasette import hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup

from .. import timeutil, workbench
from ..accounts import ROLES
from ..workbench import api, pages, session
from ..display import shown
from ..errors import StetError
from ..publish import fold
from . import highlight, marks, views


def _micros(value):
    if value is None or value == "":
        return None
    try:
        return timeutil.parse_micros(str(value))
    except StetError:
        return None


@hookimpl
def prepare_connection(conn, datasette):
    conn.create_function("stet_micros", 1, _micros, deterministic=True)
    conn.create_function("stet_fold", 1, fold, deterministic=True)
    conn.create_function("stet_snippet", 2, highlight.snippet, deterministic=True)
    if workbench.is_workbench(datasette):
        conn.set_authorizer(_no_secrets)


#: Columns no query through Datasette may read on a workbench, whatever the account: the
#: password hashes and the tokens' hashes (the login and the API read them on connections
#: of their own).
SECRET_COLUMNS = {("accounts", "password_hash"), ("tokens", "sha256")}
SECRET_TABLES = {"accounts", "tokens"}


def _no_secrets(action, arg1, arg2, db_name, trigger):
    if action == sqlite3.SQLITE_READ and (arg1, arg2) in SECRET_COLUMNS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_ATTACH:  # no other file through a query
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


#: Methods that read: everything else gets 405 wherever nothing can write.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _reads_only(view):
    """The plugin's pages read: any method but GET or HEAD answers 405 (Datasette hands a
    registered route every method)."""

    async def inner(datasette, request):
        if request.method not in ("GET", "HEAD"):
            return _not_allowed()
        return await view(datasette, request)

    inner.__name__ = inner.__qualname__ = view.__name__
    return inner


def _not_allowed():
    return Response.text("Method not allowed: this site is read-only", status=405,
                         headers={"Allow": ", ".join(SAFE_METHODS)})


@hookimpl
def register_routes():
    return [
        (r"^/-/documents/(?P<id>[0-9]{1,18})$", _reads_only(views.document_page)),
        (r"^/-/documents/(?P<id>[0-9]{1,18})/raw$", _reads_only(views.raw_bytes)),
        (r"^/-/search$", _reads_only(views.search_page)),
        # the workbench's own: 404 but on a workbench (stet.workbench)
        (r"^/-/login$", session.login),
        (r"^/-/logout$", session.logout),
        (r"^/-/documents$", _reads_only(pages.documents_page)),
        *api.ROUTES,
    ]


@hookimpl
def skip_csrf(datasette, scope):
    """No CSRF check for the JSON API with ``Authorization: Bearer``: not cookie-authenticated."""
    return api.skip_csrf(scope)


@hookimpl
def asgi_wrapper(datasette):
    """405 for any method but GET, HEAD and OPTIONS when every database served is immutable
    (``stet serve``, or ``datasette serve -i`` on a published snapshot): nothing there can
    write, and Datasette 0.65 answers a POST to a table or a canned query with a 500 (an
    assertion, or a canned query's answer it cannot send). On a workbench (the live archive,
    restricted material included) every request goes through its gate first
    (:func:`stet.workbench.session.gate`): without a live session, the login page only."""

    def wrap(app):
        async def guarded(scope, receive, send):
            if (scope["type"] == "http" and scope.get("method", "GET") not in SAFE_METHODS
                    and _all_immutable(datasette)):
                return await _not_allowed().asgi_send(send)
            if scope["type"] == "http" and workbench.is_workbench(datasette):
                return await session.gate(datasette, app, scope, receive, send)
            return await app(scope, receive, send)

        return guarded

    return wrap


@hookimpl
def actor_from_request(datasette, request):
    """On a workbench, the account the gate found for the request's session (nothing a client
    sends sets it); elsewhere nobody: the public site has no accounts."""
    if not workbench.is_workbench(datasette):
        return None
    return request.scope.get(session.ACTOR_KEY)


#: What no account may do through Datasette on a workbench: every write goes through stet's
#: own views, which check the role and write an event.
DATASETTE_WRITES = ("insert-row", "delete-row", "update-row", "create-table", "drop-table",
                    "alter-table", "upsert-row")


@hookimpl
def permission_allowed(datasette, actor, action, resource):
    """On a workbench nothing is shown to anyone without an account, and Datasette itself
    writes nothing (no write API, no writable canned query); stet's views write."""
    if not workbench.is_workbench(datasette):
        return None
    if action in DATASETTE_WRITES or action.startswith("create-") or action.startswith("drop-"):
        return False
    if actor is None or actor.get("role") not in ROLES:
        return False
    if action == "view-table" and isinstance(resource, tuple) and resource[1] in SECRET_TABLES:
        return False  # their other columns are in `stet user list` and `stet token list`
    return None


@hookimpl
def menu_links(datasette, actor, request):
    if not workbench.is_workbench(datasette) or actor is None:
        return []
    return [{"href": datasette.urls.path("/-/documents"), "label": "Documents"},
            {"href": datasette.urls.path("/-/search"), "label": "Search"},
            {"href": datasette.urls.path("/-/logout"), "label": f"Log out ({actor.get('id')})"}]


def _all_immutable(datasette) -> bool:
    served = [db for name, db in datasette.databases.items() if name != "_internal"]
    return bool(served) and not any(db.is_mutable for db in served)


@hookimpl
def prepare_jinja2_environment(env, datasette):
    env.filters["shown"] = shown


#: Cells holding a name somebody supplied: shown with control and bidirectional formatting
#: characters escaped, as every name is (the stored value stays exact in the JSON).
NAME_COLUMNS = {
    "documents": ("filename", "source", "ingested_by", "media_type"),
    "annotations": ("author", "creator"),
    "annotation_revisions": ("author", "creator"),
    "layers": ("name", "description"),
    "events": ("actor", "subject"),
}


#: Cells holding a SHA-256: a table page shows the first 12 hex digits, the whole hash in
#: the ``title`` (on hover); the row page shows it whole (stet.css hides the rest only on
#: ``body.table``, since Datasette 0.65 renders a row page's cells with the same hook).
HASH_COLUMNS = {
    "documents": ("sha256",),
    "texts": ("sha256",),
    "blobs": ("sha256",),
    "blob_chunks": ("sha256",),
    "events": ("prev_hash", "hash"),
}
SHORT_HASH = 12
_HEX = frozenset("0123456789abcdef")


@hookimpl
def extra_css_urls(template, datasette):
    """stet.css on Datasette's own pages too (the plugin's pages link it themselves)."""
    if (template or "").startswith("stet_"):
        return []
    return [datasette.urls.static_plugins("stet", "stet.css")]


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    """Link a document's title and an annotation's quote to the document page, and in the
    results of a query (a canned query or ``?sql=``) every ``document`` column, which holds a
    document id wherever stet has one; shorten a SHA-256 in a table; show names with their
    control and bidirectional formatting characters visibly escaped."""
    if value is None:
        return None
    if isinstance(value, str) and column in NAME_COLUMNS.get(table, ()):
        return Markup(marks.escape(shown(value))) if shown(value) != value else None
    if column in HASH_COLUMNS.get(table, ()):
        return _short_hash(value, database, datasette)
    if table is None and column == "document":
        doc_id = _int(value)
        if doc_id is None or isinstance(value, str) and not value.isdigit():
            return None
        href = datasette.urls.path(f"/-/documents/{doc_id}")
        return Markup(f'<a class="stet-document" href="{href}">{doc_id}</a>')
    if table not in ("documents", "annotations"):
        return None
    keys = row.keys() if hasattr(row, "keys") else []
    if table == "documents" and column == "title" and "id" in keys:
        doc_id = _int(row["id"])
        if doc_id is None:
            return None
        href = datasette.urls.path(f"/-/documents/{doc_id}")
        return Markup(f'<a class="stet-document" href="{href}">{marks.escape(shown(value))}</a>')
    if table == "annotations" and column == "exact" and "document" in keys and "id" in keys:
        doc_id, ann_id = _int(row["document"]), _int(row["id"])
        if doc_id is None or ann_id is None:
            return None
        href = datasette.urls.path(f"/-/documents/{doc_id}") + f"#annotation-{ann_id}"
        return Markup(f'<a class="stet-document" href="{href}">{marks.escape(value)}</a>')
    return None


def _short_hash(value, database, datasette):
    """A SHA-256 as its first 12 hex digits, the whole in ``title`` and in the text that
    stet.css hides on a table page; a foreign key (``documents.sha256`` to ``blobs``) keeps
    its link."""
    sha = value.get("value") if isinstance(value, dict) else value
    if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX):
        return None
    html = (f'<code class="stet-sha256" title="{sha}">{sha[:SHORT_HASH]}'
            f'<span class="stet-sha256-rest">{sha[SHORT_HASH:]}</span></code>')
    if isinstance(value, dict):
        html = f'<a href="{datasette.urls.row(database, "blobs", sha)}">{html}</a>'
    return Markup(html)


def _int(value):
    if isinstance(value, dict):  # a foreign key cell: {"value": ..., "label": ...}
        value = value.get("value")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@hookimpl
def extra_template_vars(template, database, table, request, datasette):
    """The index page gets what the archive holds (``stet_holdings``, shown under the
    description); row pages of documents and annotations get a link to the document page."""
    if template == "index.html":
        async def holdings():
            return {"stet_holdings": await views.holdings(
                datasette, everything=views.staff(datasette, request))}

        return holdings
    if template not in ("row.html",) or table not in ("documents", "annotations") or request is None:
        return {}

    async def inner():
        pks = request.url_vars.get("pks", "")
        key = _int(pks.split(",")[0]) if pks else None
        if key is None:
            return {}
        if table == "documents":
            return {"stet_document_url": datasette.urls.path(f"/-/documents/{key}")}
        db = datasette.get_database(database)
        rows = (await db.execute("SELECT document FROM annotations WHERE id = ?", [key])).rows
        if not rows:
            return {}
        return {"stet_document_url":
                datasette.urls.path(f"/-/documents/{rows[0][0]}") + f"#annotation-{key}"}

    return inner
