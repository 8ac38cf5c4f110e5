"""The stet Datasette plugin: document pages with their marks, raw bytes, search, links.

Routes:

- ``/-/documents/<id>``: the document's provenance summary and its text, every annotated
  character inside a ``<mark>`` (``?at=TIME`` for the annotations as they stood then);
- ``/-/documents/<id>/raw``: its raw bytes, as a download;
- ``/-/search?q=``: full-text search over documents and annotations, counted up to a cap.

Also: ``render_cell`` links documents and annotations to the document page, and
``prepare_connection`` adds the SQL functions ``stet_micros(time)`` (an ISO 8601 instant as
integer microseconds, for comparing with ``modified_us``) and ``stet_fold(text)`` (what the
full-text index sees of a text) to every connection, so canned queries can use them.
"""

from __future__ import annotations

from datasette import hookimpl
from markupsafe import Markup

from .. import timeutil
from ..errors import StetError
from ..publish import fold
from . import marks, views


def _micros(value):
    if value is None or value == "":
        return None
    try:
        return timeutil.parse_micros(str(value))
    except StetError:
        return None


@hookimpl
def prepare_connection(conn):
    conn.create_function("stet_micros", 1, _micros, deterministic=True)
    conn.create_function("stet_fold", 1, fold, deterministic=True)


@hookimpl
def register_routes():
    return [
        (r"^/-/documents/(?P<id>[0-9]{1,18})$", views.document_page),
        (r"^/-/documents/(?P<id>[0-9]{1,18})/raw$", views.raw_bytes),
        (r"^/-/search$", views.search_page),
    ]


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    """Link a document's title and an annotation's quote to the document page."""
    if value is None or table not in ("documents", "annotations"):
        return None
    keys = row.keys() if hasattr(row, "keys") else []
    if table == "documents" and column == "title" and "id" in keys:
        doc_id = _int(row["id"])
        if doc_id is None:
            return None
        href = datasette.urls.path(f"/-/documents/{doc_id}")
        return Markup(f'<a class="stet-document" href="{href}">{marks.escape(value)}</a>')
    if table == "annotations" and column == "exact" and "document" in keys and "id" in keys:
        doc_id, ann_id = _int(row["document"]), _int(row["id"])
        if doc_id is None or ann_id is None:
            return None
        href = datasette.urls.path(f"/-/documents/{doc_id}") + f"#annotation-{ann_id}"
        return Markup(f'<a class="stet-document" href="{href}">{marks.escape(value)}</a>')
    return None


def _int(value):
    if isinstance(value, dict):  # a foreign key cell: {"value": ..., "label": ...}
        value = value.get("value")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@hookimpl
def extra_template_vars(template, database, table, request, datasette):
    """Row pages of documents and annotations get a link to the document page."""
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
