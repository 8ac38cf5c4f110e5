"""The workbench's login, sessions and pages (stet.workbench.session, stet.workbench.pages)
through ``make_workbench(...).client``: anonymous requests see the login page only; a login
needs the password and the CSRF token and is slowed down after failures; a session cookie is
HttpOnly and SameSite; writes with the cookie need the CSRF token; the role decides what a page
offers and the server what is written; secrets stay out of every query; the public site knows
nothing of any of it."""

from __future__ import annotations

import json
import re

import pytest

from stet import Archive
from stet.serve import make_datasette
from stet.snapshots import ensure_snapshot
from stet.workbench import make_workbench
from stet.workbench.session import Sessions, Throttle, safe_next

PASSWORD = "a long password"
TEXT = "سلام دنیا، می\u200cخواهم 👋🏽 بنویسم. The committee met in Geneva.\n"
SECRET = "The witness lives at 12 Hidden Lane.\n"


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "archive.db"
    (tmp_path / "persian.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "witness.txt").write_text(SECRET, encoding="utf-8")
    with Archive(path) as archive:
        doc = archive.ingest([tmp_path / "persian.txt"], by="leila")[0]["id"]
        hidden = archive.ingest([tmp_path / "witness.txt"], by="leila")[0]["id"]
        archive.restrict(hidden, reason="protects a witness", by="leila")
        for name, role in (("rea", "reader"), ("ana", "annotator"), ("bob", "annotator"),
                           ("eddie", "editor")):
            archive.add_user(name, role=role, password=PASSWORD, by="leila")
        token = archive.create_token("ana", by="leila")["token"]
        bobs = archive.annotate(doc, layer="people<script>", body='bob\'s <b>"note"</b>',
                                by="bob", start=0, end=4)["id"]
    return {"path": path, "doc": doc, "hidden": hidden, "bobs": bobs, "token": token,
            "ds": make_workbench(path)}


class Browser:
    """A cookie jar over Datasette's test client: what a browser would send back."""

    def __init__(self, ds):
        self.ds = ds
        self.jar: dict[str, str] = {}

    def _keep(self, response):
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "max-age=0" in header.lower():
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response

    def headers(self, extra=None):
        headers = dict(extra or {})
        if self.jar:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        return headers

    async def get(self, url, headers=None):
        return self._keep(await self.ds.client.get(url, headers=self.headers(headers)))

    async def post(self, url, content, headers=None):
        return self._keep(await self.ds.client.post(url, content=content,
                                                    headers=self.headers(headers)))

    async def csrftoken(self):
        page = await self.get("/-/login")
        return re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)

    async def login(self, name, password=PASSWORD, *, next_url=None):
        token = await self.csrftoken()
        form = {"csrftoken": token, "username": name, "password": password}
        if next_url is not None:
            form["next"] = next_url
        from urllib.parse import urlencode

        return await self.post("/-/login", urlencode(form),
                               {"content-type": "application/x-www-form-urlencoded"})

    async def api(self, url, body, *, csrf=True):
        headers = {"content-type": "application/json"}
        if csrf:
            headers["x-csrftoken"] = self.jar["ds_csrftoken"]
        return await self.post(url, json.dumps(body), headers)


async def logged_in(ds, name):
    browser = Browser(ds)
    response = await browser.login(name)
    assert response.status_code == 302, response.text
    return browser


def counts(path):
    with Archive(path, readonly=True) as archive:
        return archive.counts()


@pytest.mark.parametrize("url", ["/", "/archive", "/archive/documents", "/archive/events",
                                 "/archive.json?sql=select+1", "/-/documents", "/-/documents/1",
                                 "/-/documents/2/raw", "/-/search?q=Geneva", "/archive.db",
                                 "/-/metadata.json", "/-/actor.json", "/-/logout"])
@pytest.mark.asyncio
async def test_anonymous_gets_the_login_page_only(bench, url):
    ds = bench["ds"]
    response = await ds.client.get(url)
    assert response.status_code == 302
    assert response.text == ""
    assert response.headers["location"].startswith("/-/login")
    assert response.headers["cache-control"] == "no-store"
    for method in ("post", "put", "delete"):
        answer = await getattr(ds.client, method)(url)
        assert answer.status_code in (401, 403), (method, answer.status_code)
        assert "Geneva" not in answer.text and "Hidden Lane" not in answer.text


@pytest.mark.asyncio
async def test_the_login_page_shows_nothing_of_the_archive(bench):
    ds = bench["ds"]
    page = await ds.client.get("/-/login")
    assert page.status_code == 200
    for form_field in ('name="username"', 'name="password"', 'name="csrftoken"'):
        assert form_field in page.text
    assert "<title>Log in</title>" in page.text
    for leak in ("Geneva", "persian.txt", "witness", "archive", "Datasette"):
        assert leak not in page.text


@pytest.mark.asyncio
async def test_login_opens_a_session_with_an_httponly_samesite_cookie(bench):
    browser = Browser(bench["ds"])
    response = await browser.login("ana", next_url=f"/-/documents/{bench['doc']}")
    assert response.status_code == 302
    assert response.headers["location"] == f"/-/documents/{bench['doc']}"
    cookie = [c for c in response.headers.get_list("set-cookie") if c.startswith("stet_session=")][0]
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain http on 127.0.0.1; https sets it (below)
    assert PASSWORD not in cookie and "ana" not in cookie
    page = await browser.get(f"/-/documents/{bench['doc']}")
    assert page.status_code == 200 and "Geneva" in page.text
    assert 'data-account="ana"' in page.text


@pytest.mark.asyncio
async def test_the_cookie_is_secure_over_https(bench):
    browser = Browser(bench["ds"])
    token = await browser.csrftoken()
    from stet.workbench.session import session_cookie

    assert "Secure" in session_cookie(bench["ds"], "x", secure=True)
    assert "Secure" not in session_cookie(bench["ds"], "x", secure=False)
    assert token


@pytest.mark.parametrize("name,password", [("ana", "wrong password"), ("nobody", PASSWORD),
                                           ("", PASSWORD), ("ana", "")])
@pytest.mark.asyncio
async def test_a_wrong_login_opens_nothing(bench, name, password):
    browser = Browser(bench["ds"])
    response = await browser.login(name, password)
    assert response.status_code == 401
    assert "Wrong name or password" in response.text
    assert "stet_session" not in browser.jar
    assert (await browser.get("/")).status_code == 302


@pytest.mark.asyncio
async def test_a_login_without_the_csrf_token_opens_nothing(bench):
    ds = bench["ds"]
    body = f"username=ana&password={PASSWORD.replace(' ', '+')}"
    form = {"content-type": "application/x-www-form-urlencoded"}
    # no cookie at all: Datasette's check lets it through, the login's own check does not
    response = await ds.client.post("/-/login", content=body, headers=form)
    assert response.status_code == 403
    assert "stet_session" not in response.headers.get("set-cookie", "")
    # a cookie, and a form without the token (a page elsewhere posting to the login)
    browser = Browser(ds)
    await browser.csrftoken()
    response = await browser.post("/-/login", body, form)
    assert response.status_code == 403
    assert "stet_session" not in browser.jar


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example",
                                    "javascript:alert(1)", "evil", "/\nSet-Cookie: x=1"])
@pytest.mark.asyncio
async def test_after_login_never_another_site(bench, target):
    assert safe_next(target) == "/"
    response = await Browser(bench["ds"]).login("ana", next_url=target)
    assert response.status_code == 302 and response.headers["location"] == "/"


@pytest.mark.asyncio
async def test_failed_logins_are_slowed_down(bench):
    ds = bench["ds"]
    now = [1000.0]
    ds._stet_throttle = Throttle(clock=lambda: now[0])
    browser = Browser(ds)
    for _ in range(Throttle.FREE):
        assert (await browser.login("ana", "wrong password")).status_code == 401
    refused = await browser.login("ana")  # the right password, too soon
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "stet_session" not in browser.jar
    now[0] += 1.5
    assert (await browser.login("ana", "wrong again")).status_code == 401  # the 6th failure
    assert (await browser.login("ana")).status_code == 429  # now 2 s
    now[0] += 2.5
    assert (await browser.login("ana")).status_code == 302
    # the same client trying other names is slowed down too
    other = Browser(ds)
    for number in range(Throttle.FREE):
        await other.login(f"guess{number}", "wrong password")
    assert (await other.login("bob")).status_code == 429


def test_the_throttle_grows_and_is_bounded():
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(Throttle.FREE):
        assert throttle.wait("k") == 0
        throttle.failed("k")
    waits = []
    for _ in range(20):
        waits.append(throttle.wait("k"))
        throttle.failed("k")
    assert waits[:4] == [1, 2, 4, 8] and max(waits) == Throttle.LONGEST
    throttle.succeeded("k")
    assert throttle.wait("k") == 0


def test_sessions_end_when_idle_and_at_their_lifetime():
    now = [0.0]
    sessions = Sessions(clock=lambda: now[0])
    one = sessions.open("ana")
    assert sessions.name(one) == "ana"
    now[0] += Sessions.IDLE + 1
    assert sessions.name(one) is None
    two = sessions.open("ana")
    for _ in range(int(Sessions.LIFETIME // Sessions.IDLE) + 1):
        now[0] += Sessions.IDLE - 1
        sessions.name(two)
    assert sessions.name(two) is None
    three = sessions.open("ana")
    sessions.close(three)
    assert sessions.name(three) is None and sessions.name("forged") is None


@pytest.mark.asyncio
async def test_logout_ends_the_session_on_the_server(bench):
    browser = await logged_in(bench["ds"], "ana")
    stolen = dict(browser.jar)
    page = await browser.get("/-/logout")
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
    # without the CSRF token: refused, still logged in
    refused = await browser.post("/-/logout", "",
                                 {"content-type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 403
    assert (await browser.get("/")).status_code == 200
    done = await browser.post("/-/logout", f"csrftoken={token}",
                              {"content-type": "application/x-www-form-urlencoded"})
    assert done.status_code == 302 and "stet_session" not in browser.jar
    assert (await browser.get("/")).status_code == 302
    thief = Browser(bench["ds"])
    thief.jar = stolen  # the cookie as it was before the logout: the session is gone
    assert (await thief.get("/")).status_code == 302


@pytest.mark.asyncio
async def test_a_forged_or_foreign_cookie_opens_nothing(bench, tmp_path):
    browser = await logged_in(bench["ds"], "ana")
    other = make_workbench(bench["path"])  # another workbench process: another secret
    thief = Browser(other)
    thief.jar = dict(browser.jar)
    assert (await thief.get("/")).status_code == 302
    forged = Browser(bench["ds"])
    forged.jar = {"stet_session": bench["ds"].sign("guessed", "other-namespace")}
    assert (await forged.get("/")).status_code == 302
    forged.jar = {"ds_actor": bench["ds"].sign({"a": {"id": "eddie", "role": "archivist"}}, "actor")}
    assert (await forged.get("/")).status_code == 302


@pytest.mark.asyncio
async def test_a_disabled_account_is_out_at_its_next_request(bench):
    browser = await logged_in(bench["ds"], "ana")
    assert (await browser.get("/")).status_code == 200
    with Archive(bench["path"]) as archive:
        archive.disable_user("ana", by="leila")
    assert (await browser.get("/")).status_code == 302
    with Archive(bench["path"]) as archive:
        archive.enable_user("ana", by="leila")
    assert (await browser.get("/")).status_code == 302  # the session ended; log in again
    assert (await browser.login("ana")).status_code == 302


@pytest.mark.asyncio
async def test_restricted_documents_are_shown_to_staff_marked(bench):
    browser = await logged_in(bench["ds"], "rea")
    page = await browser.get(f"/-/documents/{bench['hidden']}")
    assert page.status_code == 200
    assert "Hidden Lane" in page.text and 'id="restricted-notice"' in page.text
    public = await browser.get(f"/-/documents/{bench['doc']}")
    assert 'id="restricted-notice"' not in public.text
    raw = await browser.get(f"/-/documents/{bench['hidden']}/raw")
    assert raw.status_code == 200 and raw.content == SECRET.encode()
    listing = await browser.get("/-/documents")
    assert listing.status_code == 200
    row = re.search(rf'<tr class="stet-restricted" data-document="{bench["hidden"]}">', listing.text)
    assert row and f'<tr data-document="{bench["doc"]}">' in listing.text
    assert "2 documents, 1 restricted" in listing.text
    index = await browser.get("/")
    assert index.status_code == 200


@pytest.mark.asyncio
async def test_what_a_page_offers_follows_the_role(bench):
    ds, doc, bobs = bench["ds"], bench["doc"], bench["bobs"]
    reader = await (await logged_in(ds, "rea")).get(f"/-/documents/{doc}")
    assert 'id="workbench"' in reader.text
    assert 'id="annotate"' not in reader.text and 'data-action=' not in reader.text
    assert "workbench.js" not in reader.text
    ana = await (await logged_in(ds, "ana")).get(f"/-/documents/{doc}")
    assert '<form id="annotate"' in ana.text and "workbench.js" in ana.text
    assert f'data-action="reply" data-annotation="{bobs}"' in ana.text
    assert f'data-action="revise" data-annotation="{bobs}"' not in ana.text  # bob's, not hers
    assert f'data-action="retract" data-annotation="{bobs}"' not in ana.text
    eddie = await (await logged_in(ds, "eddie")).get(f"/-/documents/{doc}")
    assert f'data-action="revise" data-annotation="{bobs}"' in eddie.text
    assert f'data-action="retract" data-annotation="{bobs}"' in eddie.text
    # every user string escaped, attributes included
    assert 'data-body="bob&#x27;s &lt;b&gt;&quot;note&quot;&lt;/b&gt;"' in eddie.text
    assert '<option value="people&lt;script&gt;">' in eddie.text
    assert "people<script>" not in eddie.text
    # a past state reads only
    past = await (await logged_in(ds, "eddie")).get(f"/-/documents/{doc}?at=2000-01-01T00:00:00Z")
    assert 'id="annotate"' not in past.text and "data-action=" not in past.text


@pytest.mark.asyncio
async def test_a_new_role_counts_at_once(bench):
    browser = await logged_in(bench["ds"], "rea")
    assert 'id="annotate"' not in (await browser.get(f"/-/documents/{bench['doc']}")).text
    with Archive(bench["path"]) as archive:
        archive.set_role("rea", "annotator", by="leila")
    assert '<form id="annotate"' in (await browser.get(f"/-/documents/{bench['doc']}")).text


@pytest.mark.asyncio
async def test_writing_with_the_session_needs_the_csrf_token(bench):
    ds, path, doc = bench["ds"], bench["path"], bench["doc"]
    browser = await logged_in(ds, "ana")
    body = {"document": doc, "layer": "places", "start": 5, "end": 9, "body": "the world"}
    before = counts(path)
    refused = await browser.api("/-/api/annotations", body, csrf=False)
    assert refused.status_code == 403
    assert counts(path) == before
    wrong = await browser.post("/-/api/annotations", json.dumps(body),
                               {"content-type": "application/json", "x-csrftoken": "forged"})
    assert wrong.status_code == 403 and counts(path) == before
    made = await browser.api("/-/api/annotations", body)
    assert made.status_code == 201, made.text
    record = made.json()
    assert record["creator"] == "ana" and record["author"] == "ana"
    assert record["exact"] == TEXT[5:9]
    with Archive(path, readonly=True) as archive:
        event = list(archive.log())[-1]
        assert event["actor"] == "ana" and event["action"] == "annotate"
        assert event["details"]["via"] == "workbench"
        assert archive.verify() == []


@pytest.mark.asyncio
async def test_the_server_refuses_what_the_role_does_not_allow(bench):
    ds, path, doc, bobs = bench["ds"], bench["path"], bench["doc"], bench["bobs"]
    reader = await logged_in(ds, "rea")
    before = counts(path)
    response = await reader.api("/-/api/annotations", {"document": doc, "layer": "x", "start": 0,
                                                        "end": 2, "body": "no"})
    assert response.status_code == 403 and counts(path) == before
    ana = await logged_in(ds, "ana")
    for url, body in ((f"/-/api/annotations/{bobs}/retract", {}),
                      (f"/-/api/annotations/{bobs}/revisions", {"body": "mine now"})):
        response = await ana.api(url, body)
        assert response.status_code == 403, response.text
        assert "someone else" in response.json()["error"]
    assert counts(path) == before
    reply = await ana.api("/-/api/annotations", {"reply_to": bobs, "body": "I agree"})
    assert reply.status_code == 201 and reply.json()["reply_to"] == bobs


@pytest.mark.asyncio
async def test_a_bearer_header_is_judged_alone(bench):
    """A request with a bearer header skips the CSRF check: it must then never be taken for
    the cookie's account."""
    ds, path, doc = bench["ds"], bench["path"], bench["doc"]
    browser = await logged_in(ds, "eddie")
    before = counts(path)
    for header in ("Bearer not-a-token", "bearer not-a-token", "Basic ZWRkaWU6eA=="):
        response = await browser.post(
            "/-/api/annotations",
            json.dumps({"document": doc, "layer": "x", "start": 0, "end": 2, "body": "no"}),
            {"content-type": "application/json", "authorization": header})
        assert response.status_code in (401, 403), (header, response.status_code)
    assert counts(path) == before


@pytest.mark.parametrize("sql", ["select password_hash from accounts",
                                 "select * from accounts", "select sha256 from tokens",
                                 "select group_concat(password_hash) from accounts"])
@pytest.mark.asyncio
async def test_no_query_reads_a_password_or_token_hash(bench, sql):
    browser = await logged_in(bench["ds"], "eddie")
    response = await browser.get("/archive.json?" + __import__("urllib.parse").parse.urlencode(
        {"sql": sql}))
    assert "argon2" not in response.text
    assert response.json().get("rows") in ([], None)
    with Archive(bench["path"], readonly=True) as archive:
        hashes = [r[0] for r in archive.conn.execute("SELECT sha256 FROM tokens")]
    assert all(h not in response.text for h in hashes)
    for table in ("accounts", "tokens"):
        assert (await browser.get(f"/archive/{table}")).status_code == 403
    names = await browser.get("/archive.json?sql=select+name+from+accounts+order+by+name&_shape=array")
    assert [r["name"] for r in names.json()] == ["ana", "bob", "eddie", "rea"]


@pytest.mark.asyncio
async def test_datasette_itself_writes_nothing(bench):
    browser = await logged_in(bench["ds"], "eddie")
    before = counts(bench["path"])
    for url, body in (("/archive/documents/-/insert", {"row": {"title": "x"}}),
                      ("/archive/-/create", {"table": "x", "columns": [{"name": "a"}]}),
                      ("/archive/annotations/1/-/delete", {}),
                      ("/archive/annotations/1/-/update", {"update": {"body": "x"}})):
        response = await browser.api(url, body)
        assert response.status_code in (403, 404, 405), (url, response.status_code)
    assert counts(bench["path"]) == before


@pytest.mark.asyncio
async def test_the_public_site_knows_nothing_of_the_workbench(bench):
    public = make_datasette(ensure_snapshot(bench["path"]))
    for url in ("/-/login", "/-/logout", "/-/documents"):
        assert (await public.client.get(url)).status_code == 404
    home = await public.client.get("/")
    assert home.status_code == 200 and "Log out" not in home.text
    hidden = await public.client.get(f"/-/documents/{bench['hidden']}")
    assert hidden.status_code == 404
    # a workbench session cookie means nothing there
    browser = await logged_in(bench["ds"], "eddie")
    response = await public.client.get(f"/-/documents/{bench['hidden']}",
                                       headers=browser.headers())
    assert response.status_code == 404


@pytest.mark.asyncio
async def test_staff_search_finds_restricted_documents_marked(bench):
    browser = await logged_in(bench["ds"], "rea")
    page = await browser.get("/-/search?q=Hidden+Lane")
    assert page.status_code == 200
    assert f'href="/-/documents/{bench["hidden"]}"' in page.text
    assert '<strong class="stet-restricted">restricted</strong>' in page.text
    persian = await browser.get("/-/search?q=" + __import__("urllib.parse").parse.quote("دنیا"))
    assert f'href="/-/documents/{bench["doc"]}"' in persian.text
    assert "stet-restricted" not in persian.text.split("<h1>")[1]
    # the public site, from the same archive: nothing of it
    public = make_datasette(ensure_snapshot(bench["path"]))
    assert "Documents: 0" in (await public.client.get("/-/search?q=Hidden+Lane")).text


def test_stet_workbench_listens_on_this_machine_by_default(bench, monkeypatch):
    import uvicorn
    from click.testing import CliRunner

    from stet.cli import cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(cli, ["workbench", "--db", str(bench["path"])])
    assert result.exit_code == 0, result.output
    assert (calls[-1]["host"], calls[-1]["port"]) == ("127.0.0.1", 8002)
    assert "Warning" not in result.output
    result = CliRunner().invoke(cli, ["workbench", "--db", str(bench["path"]), "--host", "0.0.0.0"])
    assert result.exit_code == 0 and calls[-1]["host"] == "0.0.0.0"
    assert "Warning: the workbench listens on 0.0.0.0: put it behind a TLS reverse proxy" in result.output
    missing = CliRunner().invoke(cli, ["workbench", "--db", str(bench["path"].parent / "none.db")])
    assert missing.exit_code == 1 and missing.output.startswith("Error: no archive at")
    assert not (bench["path"].parent / "none.db").exists()
