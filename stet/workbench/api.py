"""The workbench's JSON API, for tools and for the workbench's own pages.

The API (see ``docs/workbench.md``, "The JSON API"), authenticated by
``Authorization: Bearer TOKEN`` (:func:`stet.accounts.authenticate_token`), or, without that
header, by the workbench's session cookie (:mod:`stet.workbench.session`), when every write
must carry Datasette's CSRF token (the ``X-CSRFToken`` header; ``asgi-csrf`` checks it):

- ``GET /-/api/documents/ID/annotations[?at=TIME]``: the list ``stet annotations ID --json``
  prints (reader or above);
- ``POST /-/api/annotations``: a new annotation, 201 (annotator or above);
- ``POST /-/api/annotations/ID/revisions``: a new revision, 201;
- ``POST /-/api/annotations/ID/retract``: a retraction, 200. An annotator revises and
  retracts only the annotations they created, an editor or above anyone's.

Every request opens its own :class:`stet.Archive` on the live file, in a thread, checks the
token there (once: the same open serves the check and the work) and closes it; a write is
one transaction with its event, signed by the account (never a name from the body), its
event's details saying ``"via": "workbench"``. A request with a bearer header is judged by
its token alone, never by a cookie beside it. Refusals are one-line JSON,
``{"error": "..."}``: 401 (no or bad token, no session), 403 (role or
ownership), 400 (bad input, malformed JSON, an ambiguous quote), 404 (no such document or
annotation), 405 (any other method).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .. import accounts
from ..archive import Archive
from ..errors import NotFound, StetError
from .app import API_PREFIX, is_workbench

# -- answers ------------------------------------------------------------------------------


def _json(value: Any, status: int = 200):
    from datasette.utils.asgi import Response

    return Response(json.dumps(value, ensure_ascii=False), status=status,
                    content_type="application/json; charset=utf-8")


def _error(message: str, status: int, **headers: str):
    response = _json({"error": " ".join(str(message).split())}, status)
    response.headers.update(headers)
    return response


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status(exc: StetError) -> int:
    return 404 if isinstance(exc, NotFound) else 400


def _bearer(request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _has_authorization(request) -> bool:
    return "authorization" in request.headers


def _in_thread(datasette, fn, *, readonly: bool = False):
    """``fn(archive)`` on a fresh :class:`Archive` of the live file, in a thread, closed after."""
    path = datasette._stet_archive_path

    def run():
        with Archive(path, create=False, readonly=readonly) as archive:
            return fn(archive)

    return asyncio.to_thread(run)


def _credentials(request) -> tuple[str, Any]:
    """Who the request says it is, before any database is read: ``("token", TOKEN)`` for a
    bearer header (and then only that), else ``("session", account)`` for the session's
    account (:data:`stet.workbench.session.ACTOR_KEY`). 401 for neither."""
    from .session import ACTOR_KEY

    token = _bearer(request)
    if token is not None:
        return "token", token
    if _has_authorization(request):
        raise _Refusal(401, "give Authorization: Bearer TOKEN (stet token create NAME)")
    actor = request.scope.get(ACTOR_KEY)
    if actor is None:
        raise _Refusal(401, "log in (/-/login), or give Authorization: Bearer TOKEN "
                            "(stet token create NAME)")
    return "session", {"name": actor["id"], "role": actor["role"]}


def _account(archive: Archive, credentials: tuple[str, Any], needed: str) -> dict[str, Any]:
    """The account behind ``credentials``, allowed to do what ``needed`` may (401, 403),
    checked on the archive the request's work opens anyway: a token is looked up on it."""
    kind, value = credentials
    if kind == "token":
        account = accounts.authenticate_token(archive.conn, value)
        if account is None:
            raise _Refusal(401, "unknown, revoked or expired token, or a disabled account")
    else:
        account = value
    if not accounts.allows(account["role"], needed):
        raise _Refusal(403, f"{account['role']} {account['name']!r} may not do this: "
                            f"it needs {needed} or above")
    return account


async def _body(request) -> dict[str, Any]:
    raw = await request.post_body()
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise _Refusal(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refusal(400, "the body is a JSON object")
    return body


#: What the events of the workbench's writes say of where they came from.
VIA = "workbench"

_CREATE = ("document", "layer", "start", "end", "quote", "prefix", "suffix", "body", "tags",
           "motivation", "reply_to")
_REVISE = ("start", "end", "quote", "prefix", "suffix", "body", "tags", "motivation")
_RETRACT = ("reason",)


def _fields(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _Refusal(400, f"unknown field {unknown[0]!r}: one of {', '.join(allowed)}")
    for key in ("start", "end", "reply_to"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _Refusal(400, f"{key} is an integer")
    for key in ("layer", "quote", "prefix", "suffix", "body", "motivation", "reason"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise _Refusal(400, f"{key} is a string")
    document = body.get("document")
    if document is not None and (isinstance(document, bool) or not isinstance(document, (int, str))):
        raise _Refusal(400, "document is an id or a reference")
    tags = body.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise _Refusal(400, "tags is a list of strings")
    return {key: body[key] for key in allowed if key in body}


def _owned(account: dict[str, Any], archive: Archive, annotation: int) -> None:
    """An annotator may change only what they created; an editor or above anything."""
    record = archive.annotation(annotation)
    if not accounts.allows(account["role"], "editor") and record["creator"] != account["name"]:
        raise _Refusal(403, f"annotation {annotation} was created by someone else: "
                            "only an editor or above may change it")


def _api(view, *methods: str):
    """Only on a workbench (404 elsewhere); only ``methods`` (405); refusals as JSON."""

    async def inner(datasette, request):
        if not is_workbench(datasette):
            return _error("not found", 404)
        if request.method not in methods:
            return _error(f"method {request.method} not allowed: {', '.join(methods)}", 405,
                          Allow=", ".join(methods))
        try:
            return await view(datasette, request)
        except _Refusal as exc:
            return _error(str(exc), exc.status)
        except StetError as exc:
            return _error(str(exc), _status(exc))

    inner.__name__ = inner.__qualname__ = view.__name__
    return inner


# -- views --------------------------------------------------------------------------------


async def document_annotations(datasette, request):
    credentials = _credentials(request)
    document = request.url_vars["id"]
    at = request.args.get("at")

    def read(archive):
        _account(archive, credentials, "reader")
        return list(archive.annotations(int(document), at=at))

    return _json(await _in_thread(datasette, read, readonly=True))


async def create_annotation(datasette, request):
    credentials = _credentials(request)
    fields = _fields(await _body(request), _CREATE)
    if fields.get("document") is None and fields.get("reply_to") is None:
        raise _Refusal(400, "give document (only a reply, reply_to, may leave it out)")
    if fields.get("layer") is None and fields.get("reply_to") is None:
        raise _Refusal(400, "give layer (only a reply, reply_to, may leave it out)")
    document = fields.pop("document", None)
    layer = fields.pop("layer", None)
    fields.setdefault("body", "")
    fields["tags"] = fields.get("tags") or ()

    def create(archive):
        account = _account(archive, credentials, "annotator")
        return archive.annotate(document, layer=layer, by=account["name"], via=VIA, **fields)

    return _json(await _in_thread(datasette, create), 201)


def _change(method: str, allowed, status: int):
    """A view that changes an existing annotation with ``Archive.<method>``: an annotator
    changes only what they created (editors anyone's), signed by the token's account."""

    async def view(datasette, request):
        credentials = _credentials(request)
        annotation = int(request.url_vars["id"])
        fields = _fields(await _body(request), allowed)

        def change(archive):
            account = _account(archive, credentials, "annotator")
            _owned(account, archive, annotation)
            return getattr(archive, method)(annotation, by=account["name"], via=VIA, **fields)

        return _json(await _in_thread(datasette, change), status)

    return view


revise_annotation = _change("revise", _REVISE, 201)
retract_annotation = _change("retract", _RETRACT, 200)


#: The API's routes, for the plugin's ``register_routes``.
ROUTES = [
    (r"^/-/api/documents/(?P<id>[0-9]{1,18})/annotations$",
     _api(document_annotations, "GET", "HEAD")),
    (r"^/-/api/annotations$", _api(create_annotation, "POST")),
    (r"^/-/api/annotations/(?P<id>[0-9]{1,18})/revisions$", _api(revise_annotation, "POST")),
    (r"^/-/api/annotations/(?P<id>[0-9]{1,18})/retract$", _api(retract_annotation, "POST")),
]


def skip_csrf(scope) -> bool:
    """A request to the API carrying ``Authorization: Bearer``: not cookie-authenticated."""
    if scope.get("type") != "http" or not scope.get("path", "").startswith(API_PREFIX):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return True
    return False
