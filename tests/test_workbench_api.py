"""The workbench's JSON API (stet.workbench) through ``make_workbench(...).client``: every
answer and refusal, the account signing each write, and the public site knowing nothing of it."""

from __future__ import annotations

import json
import pathlib
import time

import pytest
from click.testing import CliRunner

from stet import Archive, timeutil
from stet.cli import cli
from stet.serve import make_datasette
from stet.snapshots import ensure_snapshot
from stet.workbench import make_workbench

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT = "The committee met in Geneva. The committee adjourned in Geneva at noon.\n"
pytestmark = pytest.mark.asyncio


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "archive.db"
    source = tmp_path / "minutes.txt"
    source.write_text(TEXT, encoding="utf-8")
    with Archive(path) as archive:
        doc = archive.ingest([source], by="leila")[0]["id"]
        archive.add_layer("entities", by="leila")
        tokens = {}
        for name, role in (("rea", "reader"), ("ana", "annotator"), ("bob", "annotator"),
                           ("eddie", "editor")):
            archive.add_user(name, role=role, password="a long password", by="leila")
            tokens[name] = archive.create_token(name, by="leila")
        theirs = archive.annotate(doc, layer="entities", body="bob's", by="bob", start=0, end=3)
    return {"path": path, "doc": doc, "tokens": {k: v["token"] for k, v in tokens.items()},
            "token_ids": {k: v["id"] for k, v in tokens.items()}, "theirs": theirs["id"],
            "ds": make_workbench(path)}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


async def post(ds, url, body, token=None):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"Content-Type": "application/json", **(auth(token) if token else {})}
    return await ds.client.post(url, content=data, headers=headers)


def events(path):
    with Archive(path, readonly=True) as archive:
        return archive.counts()["events"]


def one_line_error(response, status, *words):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "\n" not in response.text
    message = response.json()["error"]
    assert isinstance(message, str) and message
    for word in words:
        assert word in message
    return message


async def test_create_signed_by_the_account_exact_json(bench):
    ds, t = bench["ds"], bench["tokens"]
    before = events(bench["path"])
    response = await post(ds, "/-/api/annotations",
                          {"document": bench["doc"], "layer": "entities", "quote": "met",
                           "body": "a meeting", "tags": ["event"], "by": "mallory"}, t["ana"])
    one_line_error(response, 400, "by")  # a signature from the body is refused outright
    assert events(bench["path"]) == before
    response = await post(ds, "/-/api/annotations",
                          {"document": bench["doc"], "layer": "entities", "quote": "met",
                           "body": "a meeting", "tags": ["event"]}, t["ana"])
    assert response.status_code == 201, response.text
    record = response.json()
    with Archive(bench["path"], readonly=True) as archive:
        assert record == archive.annotation(record["id"])
        log = list(archive.log())
    assert record["creator"] == record["author"] == "ana"
    assert (record["start"], record["end"], record["exact"]) == (14, 17, "met")
    assert record["tags"] == ["event"] and record["body"] == "a meeting"
    assert events(bench["path"]) == before + 1
    assert log[-1]["actor"] == "ana"
    # exactly what the CLI prints
    result = CliRunner().invoke(cli, ["annotations", str(bench["doc"]), "--json",
                                      "--db", str(bench["path"])])
    assert result.exit_code == 0, result.output
    listed = await ds.client.get(f"/-/api/documents/{bench['doc']}/annotations",
                                 headers=auth(t["rea"]))
    assert listed.status_code == 200
    assert listed.json() == json.loads(result.output)
    assert record in listed.json()


async def test_get_at_a_past_instant(bench):
    ds, t = bench["ds"], bench["tokens"]
    time.sleep(0.002)
    before = timeutil.iso(timeutil.now())
    time.sleep(0.002)
    response = await post(ds, "/-/api/annotations", {"document": bench["doc"], "layer": "entities",
                                                     "start": 21, "end": 27}, t["ana"])
    assert response.status_code == 201
    url = f"/-/api/documents/{bench['doc']}/annotations"
    now = (await ds.client.get(url, headers=auth(t["ana"]))).json()
    then = (await ds.client.get(url, params={"at": before}, headers=auth(t["ana"]))).json()
    assert len(now) == 2 and [r["id"] for r in then] == [bench["theirs"]]
    one_line_error(await ds.client.get(url, params={"at": "yesterday-ish"}, headers=auth(t["ana"])),
                   400)
    one_line_error(await ds.client.get("/-/api/documents/999/annotations", headers=auth(t["ana"])),
                   404)


async def test_revise_and_retract_own(bench):
    ds, t = bench["ds"], bench["tokens"]
    created = (await post(ds, "/-/api/annotations", {"document": bench["doc"], "layer": "entities",
                                                      "quote": "noon"}, t["ana"])).json()
    response = await post(ds, f"/-/api/annotations/{created['id']}/revisions",
                          {"body": "midday", "tags": ["time"]}, t["ana"])
    assert response.status_code == 201, response.text
    revised = response.json()
    assert revised["body"] == "midday" and revised["tags"] == ["time"]
    assert revised["author"] == "ana" and revised["exact"] == "noon"
    response = await post(ds, f"/-/api/annotations/{created['id']}/retract",
                          {"reason": "not needed"}, t["ana"])
    assert response.status_code == 200, response.text
    with Archive(bench["path"], readonly=True) as archive:
        assert [r["author"] for r in archive.history(created["id"])] == ["ana"] * 3
        assert list(archive.log())[-1]["actor"] == "ana"
        assert archive.verify() == []
    result = CliRunner().invoke(cli, ["verify", "--db", str(bench["path"])])
    assert result.exit_code == 0, result.output


async def test_ownership(bench):
    ds, t, theirs = bench["ds"], bench["tokens"], bench["theirs"]
    before = events(bench["path"])
    one_line_error(await post(ds, f"/-/api/annotations/{theirs}/revisions", {"body": "x"}, t["ana"]),
                   403, "editor")
    one_line_error(await post(ds, f"/-/api/annotations/{theirs}/retract", {}, t["ana"]), 403)
    assert events(bench["path"]) == before
    response = await post(ds, f"/-/api/annotations/{theirs}/revisions", {"body": "edited"},
                          t["eddie"])
    assert response.status_code == 201 and response.json()["author"] == "eddie"
    assert response.json()["creator"] == "bob"
    one_line_error(await post(ds, "/-/api/annotations/999/revisions", {"body": "x"}, t["eddie"]), 404)


async def test_reader_may_not_write(bench):
    ds, t = bench["ds"], bench["tokens"]
    before = events(bench["path"])
    one_line_error(await post(ds, "/-/api/annotations", {"document": bench["doc"], "layer": "entities",
                                                         "quote": "met"}, t["rea"]), 403, "annotator")
    assert events(bench["path"]) == before


async def test_unauthenticated(bench):
    ds, t, path = bench["ds"], bench["tokens"], bench["path"]
    body = {"document": bench["doc"], "layer": "entities", "quote": "met"}
    url = f"/-/api/documents/{bench['doc']}/annotations"
    before = events(path)
    one_line_error(await post(ds, "/-/api/annotations", body), 401)
    one_line_error(await ds.client.get(url), 401)
    one_line_error(await post(ds, "/-/api/annotations", body, "not-a-token"), 401)
    one_line_error(await ds.client.get(url, headers={"Authorization": f"Basic {t['ana']}"}), 401)
    with Archive(path) as archive:
        archive.revoke_token(bench["token_ids"]["ana"], by="leila")
        archive.disable_user("bob", by="leila")
    after = events(path)
    assert after == before + 2
    one_line_error(await post(ds, "/-/api/annotations", body, t["ana"]), 401)
    one_line_error(await post(ds, "/-/api/annotations", body, t["bob"]), 401)
    one_line_error(await ds.client.get(url, headers=auth(t["bob"])), 401)
    assert events(path) == after
    with Archive(path) as archive:  # an expired token
        token = archive.create_token("eddie", expires=1e-9, by="leila")["token"]
    time.sleep(0.01)
    one_line_error(await ds.client.get(url, headers=auth(token)), 401)


async def test_bad_input(bench):
    ds, t = bench["ds"], bench["tokens"]
    before = events(bench["path"])
    message = one_line_error(await post(ds, "/-/api/annotations",
                                        {"document": bench["doc"], "layer": "entities",
                                         "quote": "committee"}, t["ana"]), 400)
    assert "matches 2 places" in message
    one_line_error(await post(ds, "/-/api/annotations", "{not json", t["ana"]), 400, "JSON")
    one_line_error(await post(ds, "/-/api/annotations", "[1, 2]", t["ana"]), 400)
    one_line_error(await post(ds, "/-/api/annotations", {"layer": "entities", "quote": "met"},
                              t["ana"]), 400, "document")
    one_line_error(await post(ds, "/-/api/annotations", {"document": bench["doc"], "layer": "entities",
                                                         "start": "1", "end": 3}, t["ana"]), 400)
    one_line_error(await post(ds, "/-/api/annotations", {"document": bench["doc"], "layer": "entities",
                                                         "start": 5, "end": 500}, t["ana"]), 400)
    one_line_error(await post(ds, "/-/api/annotations", {"document": 999, "layer": "entities",
                                                         "quote": "met"}, t["ana"]), 404)
    assert events(bench["path"]) == before


async def test_methods(bench):
    ds, t = bench["ds"], bench["tokens"]
    response = await ds.client.put("/-/api/annotations", content="{}", headers=auth(t["ana"]))
    one_line_error(response, 405)
    assert response.headers["allow"] == "POST"
    one_line_error(await ds.client.get("/-/api/annotations", headers=auth(t["ana"])), 405)
    one_line_error(await post(ds, f"/-/api/documents/{bench['doc']}/annotations", {}, t["ana"]), 405)


async def test_csrf_skipped_for_bearer_even_with_a_cookie(bench):
    ds, t = bench["ds"], bench["tokens"]
    response = await ds.client.post(
        "/-/api/annotations", cookies={"ds_csrftoken": "whatever"},
        content=json.dumps({"document": bench["doc"], "layer": "entities", "quote": "noon"}),
        headers={"Content-Type": "application/json", **auth(t["ana"])})
    assert response.status_code == 201, response.text


async def test_not_on_the_public_site(bench):
    public = make_datasette(ensure_snapshot(bench["path"]))
    token = bench["tokens"]["eddie"]
    before = events(bench["path"])
    response = await public.client.get(f"/-/api/documents/{bench['doc']}/annotations",
                                       headers=auth(token))
    assert response.status_code == 404
    response = await public.client.post("/-/api/annotations", content="{}", headers=auth(token))
    assert response.status_code == 405  # the public site is read-only before anything else
    # a mutable Datasette that is not a workbench knows nothing of the API either
    from datasette.app import Datasette
    from datasette.database import Database

    other = Datasette(cors=False)
    other.add_database(Database(other, path=str(bench["path"]), is_mutable=True), name="archive")
    response = await post(other, "/-/api/annotations", {"document": bench["doc"], "layer": "entities",
                                                        "quote": "met"}, token)
    assert response.status_code == 404
    assert events(bench["path"]) == before


@pytest.mark.parametrize("url", ["/", "/archive", "/archive/documents", "/archive/accounts",
                                 "/archive.json?sql=select+name,password_hash+from+accounts",
                                 "/-/documents/1", "/-/documents/1/raw", "/-/search?q=Geneva",
                                 "/archive.db"])
async def test_a_token_opens_the_api_and_no_page(bench, url):
    """A bearer token is for the API only: every page, table, ?sql= or download sends it to
    the login, as it does anyone without a session (tests/test_workbench_session.py)."""
    ds, t = bench["ds"], bench["tokens"]
    for headers in ({}, auth(t["eddie"])):
        response = await ds.client.get(url, headers=headers)
        assert response.status_code == 302, response.text
        assert response.headers["location"].startswith("/-/login")
        assert response.text == ""
    ok = await ds.client.get(f"/-/api/documents/{bench['doc']}/annotations", headers=auth(t["rea"]))
    assert ok.status_code == 200
