"""Who is asking: the workbench's login, its sessions, and the gate in front of every page.

A login (``/-/login``, a form of ``username`` and ``password`` with Datasette's CSRF token)
checks the password against its argon2 hash (:func:`stet.accounts.check_password`, in a
thread) and opens a session: a random identifier kept in this process only
(:class:`Sessions`), sent as the cookie ``stet_session`` (HttpOnly, SameSite=Lax, Secure
when the request came over HTTPS, signed with the workbench's secret). A session ends at
``/-/logout``, after :data:`Sessions.IDLE` without a request, after :data:`Sessions.LIFETIME`
in any case, and when the workbench stops. Every request reads the account's role and
whether it is disabled from the chain again (``account_state``): a disabled account's
sessions stop at its next request, a new role counts at once.

Failed logins are slowed down (:class:`Throttle`): after :data:`Throttle.FREE` failures in a
row for one name, or from one client address, each further attempt is refused (429, with
``Retry-After``) until a wait that doubles with each failure (1 s, 2 s, 4 s ... at most
:data:`Throttle.LONGEST`) has passed since the last one; a success for the name clears it.

:func:`gate` stands in front of everything on a workbench: a request without a live session
gets the login page (a GET or HEAD is redirected to ``/-/login``; anything else answers
401), except the login itself, the static files (CSS and scripts, which hold nothing of the
archive) and the JSON API (which takes a bearer token too, and checks it itself). What the
gate finds is put in the request's scope (:data:`ACTOR_KEY`), where the plugin's
``actor_from_request`` reads it: nothing a client sends can set it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

from .. import accounts
from .app import API_PREFIX, is_workbench

COOKIE = "stet_session"
SIGNING_NAMESPACE = "stet-session"
ACTOR_KEY = "stet_actor"

#: Paths anyone may reach: the login, static files, and the API (it authenticates itself).
OPEN_PREFIXES = ("/-/static/", "/-/static-plugins/", API_PREFIX)
OPEN_PATHS = ("/-/login", "/favicon.ico")


class Sessions:
    """Live sessions of this process: identifier -> (account name, opened, last seen)."""

    IDLE = 8 * 3600
    LIFETIME = 24 * 3600

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._live: dict[str, list[Any]] = {}

    def open(self, name: str) -> str:
        self._expire()
        session = secrets.token_urlsafe(32)
        now = self.clock()
        self._live[session] = [name, now, now]
        return session

    def name(self, session: str | None) -> str | None:
        """The account of a live session (and the session is seen now), else None."""
        entry = self._live.get(session) if isinstance(session, str) else None
        if entry is None:
            return None
        now = self.clock()
        if now - entry[2] > self.IDLE or now - entry[1] > self.LIFETIME:
            self._live.pop(session, None)
            return None
        entry[2] = now
        return entry[0]

    def close(self, session: str | None) -> None:
        if isinstance(session, str):
            self._live.pop(session, None)

    def __len__(self) -> int:
        return len(self._live)

    def _expire(self) -> None:
        now = self.clock()
        for session, (_, opened, seen) in list(self._live.items()):
            if now - seen > self.IDLE or now - opened > self.LIFETIME:
                del self._live[session]


class Throttle:
    """Failed logins per key (a name, a client address): how long the next attempt waits."""

    FREE = 5
    LONGEST = 15 * 60.0
    KEPT = 100_000  # keys remembered at most: a flood of names cannot grow memory unbounded

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}

    def wait(self, *keys: str) -> float:
        """Seconds before ``keys`` may try again (0: now)."""
        longest = 0.0
        now = self.clock()
        for key in keys:
            count, last = self._failures.get(key, (0, 0.0))
            if count >= self.FREE:
                delay = min(2.0 ** (count - self.FREE), self.LONGEST)
                longest = max(longest, last + delay - now)
        return max(0.0, longest)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self._failures) >= self.KEPT:
            oldest = sorted(self._failures.items(), key=lambda item: item[1][1])
            for key, _ in oldest[: self.KEPT // 10]:
                del self._failures[key]
        for key in keys:
            count, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (count + 1, now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


# -- cookies ---------------------------------------------------------------------------------


def cookies(scope) -> dict[str, str]:
    jar: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            parsed = SimpleCookie()
            try:
                parsed.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header: no cookies
                continue
            jar.update({key: morsel.value for key, morsel in parsed.items()})
    return jar


def session_of(datasette, scope) -> str | None:
    """The session identifier the request's signed cookie carries, or None."""
    signed = cookies(scope).get(COOKIE)
    if not signed:
        return None
    try:
        value = datasette.unsign(signed, SIGNING_NAMESPACE)
    except Exception:  # a bad signature, or not ours
        return None
    return value if isinstance(value, str) else None


def session_cookie(datasette, session: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that carries ``session``."""
    return _cookie(datasette.sign(session, SIGNING_NAMESPACE), secure=secure)


def cleared_cookie(*, secure: bool) -> str:
    return _cookie("", secure=secure, max_age=0)


def _cookie(value: str, *, secure: bool, max_age: int | None = None) -> str:
    jar = SimpleCookie()
    jar[COOKIE] = value
    morsel = jar[COOKIE]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if secure:
        morsel["secure"] = True
    if max_age is not None:
        morsel["max-age"] = max_age
    return morsel.OutputString()


def secure(scope) -> bool:
    return scope.get("scheme") == "https"


# -- who is asking ---------------------------------------------------------------------------


ACCOUNT_SQL = ("SELECT a.name, s.role, s.disabled FROM accounts a "
               "JOIN account_state s ON s.account = a.id WHERE a.name = ?")


async def actor(datasette, scope) -> dict[str, Any] | None:
    """The account of the request's live session, read from the chain now, as Datasette's
    actor ``{"id": name, "role": role}``; None without a session or for a disabled account
    (whose session then ends)."""
    sessions = datasette._stet_sessions
    session = session_of(datasette, scope)
    name = sessions.name(session)
    if name is None:
        return None
    from ..serve import DATABASE_NAME

    rows = (await datasette.get_database(DATABASE_NAME).execute(ACCOUNT_SQL, [name])).rows
    if not rows or rows[0][2] or rows[0][1] not in accounts.ROLES:
        sessions.close(session)
        return None
    return {"id": rows[0][0], "role": rows[0][1]}


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


async def gate(datasette, app, scope, receive, send) -> None:
    """Let a request with a live session through (its actor in the scope), and the open
    paths; send anyone else to the login."""
    from datasette.utils.asgi import Response

    if scope["type"] != "http" or not is_workbench(datasette):
        return await app(scope, receive, send)
    found = await actor(datasette, scope)
    scope = {**scope, ACTOR_KEY: found}
    path = scope.get("path", "")
    if found is not None or _open(path):
        return await app(scope, receive, send)
    if scope.get("method") in ("GET", "HEAD"):
        target = path + ("?" + scope["query_string"].decode("latin-1")
                         if scope.get("query_string") else "")
        location = datasette.urls.path("/-/login") + (
            "?" + urlencode({"next": target}) if path != "/" else "")
        response = Response("", status=302, headers={"Location": location})
    else:
        response = Response.text("Log in first: /-/login", status=401)
    response.headers["Cache-Control"] = "no-store"
    await response.asgi_send(send)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site only (never another host)."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(c) < 32 for c in value)):
        return "/"
    return value


# -- the login and logout pages --------------------------------------------------------------


async def login(datasette, request):
    from datasette.utils.asgi import Response

    if not is_workbench(datasette):
        return Response.text("Not found", status=404)
    if request.method not in ("GET", "HEAD", "POST"):
        return Response.text("Method not allowed", status=405, headers={"Allow": "GET, POST"})
    target = safe_next(request.args.get("next"))
    if request.scope.get(ACTOR_KEY) is not None and request.method != "POST":
        return Response.redirect(target)
    if request.method != "POST":
        return await _login_page(datasette, request, target)
    form = dict(parse_qsl((await request.post_body()).decode("utf-8", "replace"),
                          keep_blank_values=True))
    target = safe_next(form.get("next") or target)
    # The form's CSRF token must match the cookie even when Datasette's check let a
    # cookie-less POST through: no page elsewhere can log a browser in to another account.
    expected = request.cookies.get("ds_csrftoken", "")
    if not expected or not secrets.compare_digest(form.get("csrftoken", ""), expected):
        return await _login_page(datasette, request, target, status=403,
                                 error="The form had expired: try again.")
    name = form.get("username", "").strip()
    password = form.get("password", "")
    throttle = datasette._stet_throttle
    client = "client:" + ((request.scope.get("client") or ("?",))[0] or "?")
    user_key = "user:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
    wait = throttle.wait(user_key, client)
    if wait > 0:
        response = await _login_page(
            datasette, request, target, status=429,
            error=f"Too many failed logins: wait {int(wait) + 1} seconds and try again.")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    path = datasette._stet_archive_path

    def check():
        from ..archive import Archive

        with Archive(path, create=False, readonly=True) as archive:
            return accounts.check_password(archive.conn, name, password)

    account = await asyncio.to_thread(check) if name else None
    if account is None:
        throttle.failed(user_key, client)
        return await _login_page(datasette, request, target, status=401,
                                 error="Wrong name or password, or a disabled account.")
    throttle.succeeded(user_key)
    session = datasette._stet_sessions.open(account["name"])
    response = Response.redirect(target)
    response.headers["Set-Cookie"] = session_cookie(datasette, session,
                                                    secure=secure(request.scope))
    response.headers["Cache-Control"] = "no-store"
    return response


async def _login_page(datasette, request, target: str, *, status: int = 200,
                      error: str | None = None):
    from datasette.utils.asgi import Response

    html = await datasette.render_template(
        "stet_login.html", {"next": target, "error": error}, request=request)
    return Response.html(html, status=status, headers={"Cache-Control": "no-store"})


async def logout(datasette, request):
    """GET: a page with the logout button; POST (with the CSRF token): the session ends."""
    from datasette.utils.asgi import Response

    if not is_workbench(datasette):
        return Response.text("Not found", status=404)
    if request.method == "POST":
        datasette._stet_sessions.close(session_of(datasette, request.scope))
        response = Response.redirect(datasette.urls.path("/-/login"))
        response.headers["Set-Cookie"] = cleared_cookie(secure=secure(request.scope))
        response.headers["Cache-Control"] = "no-store"
        return response
    if request.method not in ("GET", "HEAD"):
        return Response.text("Method not allowed", status=405, headers={"Allow": "GET, POST"})
    html = await datasette.render_template("stet_logout.html", {}, request=request)
    return Response.html(html, headers={"Cache-Control": "no-store"})
