"""The workbench in a real browser: Debian's Chromium driven by Playwright, against
``make_workbench(path)`` served by uvicorn in a thread.

What only a browser shows: the login in front of every page, a selection made with the mouse
over right-to-left text (a word with a ZWNJ, an emoji of several UTF-16 units) becoming an
annotation whose code-point offsets and quote the archive keeps exactly, the buttons each role
gets, and the server refusing what the page does not offer. A screenshot goes to
tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from click.testing import CliRunner

from stet import Archive
from stet.cli import cli
from stet.serve import load_metadata
from stet.snapshots import ensure_snapshot, source_head
from stet.workbench import make_workbench

from test_browser import ARTIFACTS, MARKED, browser, served  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.browser

PASSWORD = "a long password"
TITLE = "Archive of the Zanjan Hearings"
PHRASE = "می\u200cخواهم 👋🏽 برایتان بنویسم"
TEXT = ("سلام دنیا، این یک متن آزمایشی برای میز کار است. من " + PHRASE
        + " که همه چیز خوب است. پایان نامه.\n")
BOBS_WORD = "پایان"
ENGLISH = "The committee met in Geneva. The committee adjourned at noon.\n"
WAIT = 15_000  # ms: how long a wait for a condition may take before the test fails


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A live archive (a Persian document, an English one; a reader, two annotators, an
    editor; one annotation of bob's) served by the workbench on 127.0.0.1, in a thread."""
    directory = tmp_path_factory.mktemp("workbench-browser")
    path = directory / "archive.db"
    (directory / "persian.txt").write_text(TEXT, encoding="utf-8")
    (directory / "minutes.txt").write_text(ENGLISH, encoding="utf-8")
    with Archive(path) as archive:
        doc = archive.ingest([directory / "persian.txt"], by="leila")[0]["id"]
        eng = archive.ingest([directory / "minutes.txt"], by="leila")[0]["id"]
        for name, role in (("rea", "reader"), ("ana", "annotator"), ("bob", "annotator"),
                           ("eddie", "editor")):
            archive.add_user(name, role=role, password=PASSWORD, by="leila")
        start = TEXT.index(BOBS_WORD)
        bobs = archive.annotate(doc, layer="entities", body="bob's note", by="bob",
                                start=start, end=start + len(BOBS_WORD))["id"]
        assert archive.text(doc) == TEXT
    metadata = load_metadata()
    metadata["title"] = TITLE
    info = {"path": path, "doc": doc, "eng": eng, "bobs": bobs, "state": {}}
    with served(make_workbench(path, metadata=metadata).app()) as base:
        info["base"] = base
        yield info


def events(path) -> int:
    with Archive(path, readonly=True) as archive:
        return archive.counts()["events"]


def login(browser, base, name, path="/"):
    """A new browser context, logged in as ``name`` through the login form, its page at
    ``path`` (the login sends it there)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.goto(base + path)
    assert page.url.startswith(base + "/-/login"), page.url
    page.fill("form#login input[name=username]", name)
    page.fill("form#login input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form#login button[type=submit]")
    assert page.url == base + path, page.url
    assert any(c["name"] == "stet_session" for c in context.cookies())
    return context, page


# Where a code point offset falls on the screen: a point the browser itself maps back to that
# offset (document.caretRangeFromPoint), found inside the character just after it (for the
# start of a selection) or just before it (for the end). The text is right-to-left, so which
# edge of a glyph is which is left for the browser to say.
POINT = """([target, side]) => {
  const root = document.getElementById('document-text');
  function locate(cp) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let seen = 0, node;
    while ((node = walker.nextNode())) {
      const chars = Array.from(node.data);
      if (seen + chars.length > cp) return [node, chars.slice(0, cp - seen).join('').length];
      seen += chars.length;
    }
    throw new Error('offset ' + cp + ' is past the end');
  }
  function codePointAt(node, offset) {
    const before = document.createRange();
    before.selectNodeContents(root);
    before.setEnd(node, offset);
    return Array.from(before.toString()).length;
  }
  const cp = side === 'start' ? target : target - 1;
  const [node, offset] = locate(cp);
  const range = document.createRange();
  range.setStart(node, offset);
  range.setEnd(node, offset + String.fromCodePoint(node.data.codePointAt(offset)).length);
  const rect = range.getClientRects()[0];
  const y = rect.top + rect.height / 2;
  for (let x = rect.left + 0.5; x < rect.right; x += 0.5) {
    const caret = document.caretRangeFromPoint(x, y);
    if (caret && root.contains(caret.startContainer)
        && codePointAt(caret.startContainer, caret.startOffset) === target) return [x, y];
  }
  throw new Error('no point maps to offset ' + target);
}"""

# What the browser reports of the selection: its text, and its offsets in code points as the
# page computes them (stet.js) and as counted here independently.
SELECTION = """() => {
  const root = document.getElementById('document-text');
  const selection = window.getSelection();
  const range = selection.getRangeAt(0);
  const before = document.createRange();
  before.selectNodeContents(root);
  before.setEnd(range.startContainer, range.startOffset);
  const start = Array.from(before.toString()).length;
  const offsets = window.stetSelectionOffsets();
  return {text: selection.toString(), start: start,
          end: start + Array.from(range.toString()).length,
          reported: [Number(offsets[0]), Number(offsets[1])]};
}"""

# A POST from the page's own script, with the page's CSRF token or without it.
POST = """async ([url, body, csrf]) => {
  const headers = {'Content-Type': 'application/json', 'Accept': 'application/json'};
  if (csrf) headers['X-CSRFToken'] = document.getElementById('workbench').dataset.csrftoken;
  const response = await fetch(url, {method: 'POST', credentials: 'same-origin', headers,
                                     body: JSON.stringify(body)});
  return [response.status, await response.text()];
}"""


def mouse_select(page, start, end):
    """Select code points ``start`` to ``end`` of #document-text by dragging the mouse, wait
    for form#annotate to open; what the browser then reports (:data:`SELECTION`)."""
    x0, y0 = page.evaluate(POINT, [start, "start"])
    x1, y1 = page.evaluate(POINT, [end, "end"])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.wait_for_selector("form#annotate", state="visible")
    return page.evaluate(SELECTION)


def saved(page, path, action):
    """Do ``action`` (a click that saves form#annotate) and wait for the page to load again
    at the record's list item (``#annotation-ID``); that record, as the archive has it."""
    with page.expect_response(lambda r: "/-/api/annotations" in r.url
                              and r.request.method == "POST") as answer:
        with page.expect_event("load"):
            action()
    assert answer.value.status in (200, 201), answer.value.status
    match = re.search(r"#annotation-([0-9]+)$", page.url)
    assert match, page.url
    page.wait_for_selector(f"li#annotation-{match.group(1)}", state="attached")
    with Archive(path, readonly=True) as archive:
        return archive.annotation(int(match.group(1)))


def test_anonymous_lands_on_the_login_page(browser, bench):
    base = bench["base"]
    context = browser.new_context()
    context.set_default_timeout(WAIT)
    page = context.new_page()
    try:
        for path in ("/", f"/-/documents/{bench['doc']}", "/-/documents", "/-/search?q=x"):
            response = page.goto(base + path)
            assert response.status == 200
            assert page.url.startswith(base + "/-/login"), (path, page.url)
            assert page.locator("form#login").count() == 1
            assert page.locator("form#login input[name=username]").count() == 1
            assert page.locator("form#login input[name=password][type=password]").count() == 1
            assert page.locator("form#login input[type=hidden][name=csrftoken]").count() == 1
            assert page.locator("#document-text").count() == 0
            html = page.content()
            for secret in (TITLE, "سلام دنیا", "Geneva", "committee", "bob's note"):
                assert secret not in html, (path, secret)
        assert not any(c["name"] == "stet_session" for c in context.cookies())
    finally:
        context.close()
    # the same title is there once logged in: the check above can fail
    context, page = login(browser, base, "rea")
    try:
        assert TITLE in page.content()
    finally:
        context.close()


def test_an_annotator_annotates_a_mouse_selection(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    context, page = login(browser, base, "ana", f"/-/documents/{doc}")
    try:
        assert page.eval_on_selector("#document-text", "el => el.textContent") == TEXT
        assert page.eval_on_selector("#document-text", "el => getComputedStyle(el).direction") == "rtl"
        assert page.locator("form#annotate").is_hidden()

        start = TEXT.index(PHRASE)
        end = start + len(PHRASE)
        assert "\u200c" in PHRASE and "\U0001f3fd" in PHRASE
        assert len(PHRASE.encode("utf-16-le")) // 2 > len(PHRASE)  # UTF-16 counts differ
        chosen = mouse_select(page, start, end)
        # the mouse selected exactly the phrase, and the page counts it in code points
        assert chosen["text"] == PHRASE, chosen
        assert (chosen["start"], chosen["end"]) == (start, end), chosen
        assert chosen["reported"] == [start, end], chosen
        assert page.input_value("form#annotate input[name=start]") == str(start)
        assert page.input_value("form#annotate input[name=end]") == str(end)
        assert page.inner_text("#annotate-quote") == PHRASE

        before = events(path)
        page.fill("form#annotate textarea[name=body]", "یادداشت: a wave 👋🏽")
        page.click("form#annotate button[type=submit]")  # no layer yet: refused on the page
        assert "layer" in page.inner_text("form#annotate .error")
        assert page.locator("form#annotate .error").is_visible()
        assert events(path) == before
        page.fill("form#annotate input[name=layer]", "greetings-new")
        page.fill("form#annotate input[name=tags]", "a, b")
        page.select_option("form#annotate select[name=motivation]", "highlighting")
        record = saved(page, path, lambda: page.click("form#annotate button[type=submit]"))
        new = record["id"]
        assert page.url.endswith(f"#annotation-{new}")
        assert page.eval_on_selector("#document-text", "el => el.textContent") == TEXT
        marked = page.evaluate(MARKED)
        assert marked.get(str(new)) == PHRASE, marked

        with Archive(path, readonly=True) as archive:
            current = {a["id"]: a for a in archive.annotations(doc)}
            log = list(archive.log())
            layers = [layer["name"] for layer in archive.layers()]
        assert events(path) == before + 2  # the new layer, then the annotation
        assert "greetings-new" in layers
        stored = current[new]
        assert (stored["start"], stored["end"], stored["exact"]) == (start, end, PHRASE)
        assert stored["creator"] == stored["author"] == "ana"
        assert stored["body"] == "یادداشت: a wave 👋🏽"
        assert stored["layer"] == "greetings-new"
        assert stored["tags"] == ["a", "b"]
        assert stored["motivation"] == "highlighting"
        assert stored["revision"] == 1
        event = log[-1]
        assert event["action"] == "annotate" and event["actor"] == "ana"
        assert event["subject"] == f"annotation:{new}"
        assert event["details"]["via"] == "workbench"
        # what the command line prints agrees
        result = CliRunner().invoke(cli, ["annotations", str(doc), "--json", "--db", str(path)])
        assert result.exit_code == 0, result.output
        listed = {a["id"]: a for a in json.loads(result.output)}
        assert (listed[new]["start"], listed[new]["end"], listed[new]["exact"]) == (start, end, PHRASE)

        # -- revise it through its button ---------------------------------------------------
        item = page.locator(f"li#annotation-{new}")
        assert item.locator("button.reply").count() == 1
        item.locator("button.revise").click()
        page.wait_for_selector("form#annotate", state="visible")
        assert page.input_value("form#annotate textarea[name=body]") == "یادداشت: a wave 👋🏽"
        assert page.input_value("form#annotate input[name=tags]") == "a, b"
        assert page.input_value("form#annotate select[name=motivation]") == "highlighting"
        assert page.input_value("form#annotate input[name=annotation]") == str(new)
        assert page.locator("form#annotate .layer-field").is_hidden()
        page.click("form#annotate button[type=submit]")  # nothing changed: nothing sent
        assert page.inner_text("form#annotate .error") == "Nothing changed."
        assert events(path) == before + 2
        page.fill("form#annotate textarea[name=body]", "یادداشت بازبینی‌شده")
        revised = saved(page, path, lambda: page.click("form#annotate button[type=submit]"))
        assert revised["id"] == new and revised["revision"] == 2
        with Archive(path, readonly=True) as archive:
            stored = archive.annotation(new)
            event = list(archive.log())[-1]
        assert stored["revision"] == 2 and stored["author"] == "ana"
        assert stored["body"] == "یادداشت بازبینی‌شده"
        assert (stored["start"], stored["end"], stored["exact"]) == (start, end, PHRASE)
        assert stored["tags"] == ["a", "b"] and stored["motivation"] == "highlighting"
        assert (event["action"], event["actor"], event["details"]["via"]) == ("revise", "ana",
                                                                              "workbench")
        assert "یادداشت بازبینی‌شده" in page.inner_text(f"li#annotation-{new}")
        assert page.evaluate(MARKED).get(str(new)) == PHRASE
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "workbench-persian.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 0
        print(f"screenshot: {shot}")
        bench["state"]["anas"] = new
    finally:
        context.close()


def test_an_editor_revises_the_annotators_annotation(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    anas = bench["state"].get("anas")
    if anas is None:
        pytest.skip("needs the annotation test_an_annotator_annotates_a_mouse_selection makes")
    context, page = login(browser, base, "eddie", f"/-/documents/{doc}")
    try:
        for ann in (anas, bench["bobs"]):  # an editor may change anyone's
            item = page.locator(f"li#annotation-{ann}")
            assert item.locator("button.revise").count() == 1
            assert item.locator("button.retract").count() == 1
        # opening a revision and cancelling it leaves nothing of it in a new annotation's form
        page.locator(f"li#annotation-{bench['bobs']} button.revise").click()
        page.wait_for_selector("form#annotate", state="visible")
        assert page.input_value("form#annotate textarea[name=body]") == "bob's note"
        page.click("form#annotate button.cancel")
        assert page.locator("form#annotate").is_hidden()
        word = TEXT.index("دنیا")
        chosen = mouse_select(page, word, word + len("دنیا"))
        assert (chosen["text"], chosen["start"], chosen["end"]) == ("دنیا", word, word + 4)
        assert page.inner_text("form#annotate .form-title") == "New annotation"
        assert page.locator("form#annotate .layer-field").is_visible()
        assert page.input_value("form#annotate input[name=annotation]") == ""
        assert page.input_value("form#annotate textarea[name=body]") == ""
        assert page.input_value("form#annotate input[name=tags]") == ""
        assert page.input_value("form#annotate select[name=motivation]") == "commenting"
        page.click("form#annotate button.cancel")

        page.locator(f"li#annotation-{anas} button.revise").click()
        page.wait_for_selector("form#annotate", state="visible")
        assert page.input_value("form#annotate textarea[name=body]") == "یادداشت بازبینی‌شده"
        page.fill("form#annotate textarea[name=body]", "edited by the editor")
        revised = saved(page, path, lambda: page.click("form#annotate button[type=submit]"))
        assert revised["id"] == anas and revised["revision"] == 3
    finally:
        context.close()
    result = CliRunner().invoke(cli, ["history", str(anas), "--json", "--db", str(path)])
    assert result.exit_code == 0, result.output
    history = json.loads(result.output)
    assert [(r["revision"], r["author"], r["creator"]) for r in history] == [
        (1, "ana", "ana"), (2, "ana", "ana"), (3, "eddie", "ana")]
    assert history[-1]["body"] == "edited by the editor"
    assert history[-1]["exact"] == PHRASE
    with Archive(path, readonly=True) as archive:
        assert [r["author"] for r in archive.history(anas)] == ["ana", "ana", "eddie"]
        signed = [(e["action"], e["actor"], e["details"].get("via"))
                  for e in archive.log() if e["subject"] == f"annotation:{anas}"]
    assert signed == [("annotate", "ana", "workbench"), ("revise", "ana", "workbench"),
                      ("revise", "eddie", "workbench")]


def test_an_annotator_cannot_change_someone_elses(browser, bench):
    base, path, doc, bobs = bench["base"], bench["path"], bench["doc"], bench["bobs"]
    context, page = login(browser, base, "ana", f"/-/documents/{doc}")
    try:
        item = page.locator(f"li#annotation-{bobs}")
        assert item.count() == 1
        assert item.locator("button.reply").count() == 1
        assert item.locator("button.revise").count() == 0
        assert item.locator("button.retract").count() == 0
        before = events(path)
        status, text = page.evaluate(POST, [f"/-/api/annotations/{bobs}/retract",
                                            {"reason": "not mine"}, True])
        assert status == 403, text
        assert "someone else" in json.loads(text)["error"]
        status, text = page.evaluate(POST, [f"/-/api/annotations/{bobs}/revisions",
                                            {"body": "mine now"}, True])
        assert status == 403, text
        assert events(path) == before
        with Archive(path, readonly=True) as archive:
            record = archive.annotation(bobs)
        assert (record["status"], record["revision"], record["body"]) == ("active", 1, "bob's note")
        # what she may do: reply, through the reply button
        item.locator("button.reply").click()
        page.wait_for_selector("form#annotate", state="visible")
        assert page.inner_text("form#annotate .form-title") == f"Reply to annotation {bobs}"
        assert page.locator("form#annotate .layer-field").is_hidden()
        assert page.input_value("form#annotate select[name=motivation]") == "replying"
        page.fill("form#annotate textarea[name=body]", "I agree")
        reply = saved(page, path, lambda: page.click("form#annotate button[type=submit]"))
        with Archive(path, readonly=True) as archive:
            stored = archive.annotation(reply["id"])
            event = list(archive.log())[-1]
        assert (stored["reply_to"], stored["creator"], stored["body"]) == (bobs, "ana", "I agree")
        assert (event["actor"], event["details"]["via"]) == ("ana", "workbench")
        assert events(path) == before + 1
    finally:
        context.close()


def test_a_reader_gets_no_form_and_cannot_write(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    context, page = login(browser, base, "rea", f"/-/documents/{doc}")
    try:
        assert page.locator("#document-text").count() == 1
        assert page.locator(f"li#annotation-{bench['bobs']}").count() == 1
        assert page.locator("#workbench").count() == 1
        assert page.locator("form#annotate").count() == 0
        assert page.locator("form#retract").count() == 0
        assert page.locator("#annotation-list button").count() == 0
        assert page.locator("button[data-action]").count() == 0
        before = events(path)
        start = TEXT.index("سلام")
        status, text = page.evaluate(POST, ["/-/api/annotations",
                                            {"document": doc, "layer": "entities", "start": start,
                                             "end": start + 4, "body": "a reader's"}, True])
        assert status == 403, text
        assert "reader" in json.loads(text)["error"]  # refused for the role, not the token
        assert events(path) == before
    finally:
        context.close()


def test_a_post_without_the_csrf_token_writes_nothing(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    context, page = login(browser, base, "ana", f"/-/documents/{doc}")
    try:
        names = {c["name"] for c in context.cookies()}
        assert {"stet_session", "ds_csrftoken"} <= names
        before = events(path)
        body = {"document": doc, "layer": "entities", "start": 0, "end": 4, "body": "no token"}
        status, text = page.evaluate(POST, ["/-/api/annotations", body, False])
        assert status == 403, text
        assert events(path) == before
        # the same request with the token is written: the refusal was the missing token
        status, text = page.evaluate(POST, ["/-/api/annotations", body, True])
        assert status == 201, text
        assert events(path) == before + 1
        # and she retracts it again through its button
        made = json.loads(text)["id"]
        page.reload()
        page.locator(f"li#annotation-{made} button.retract").click()
        page.wait_for_selector("form#retract", state="visible")
        assert page.locator("form#annotate").is_hidden()
        page.fill("form#retract input[name=reason]", "made by a test")
        with page.expect_event("load"):
            page.click("form#retract button[type=submit]")
        assert page.locator(f"li#annotation-{made}").count() == 0
        with Archive(path, readonly=True) as archive:
            record = archive.annotation(made)
            event = list(archive.log())[-1]
        assert (record["status"], record["reason"]) == ("retracted", "made by a test")
        assert (event["action"], event["actor"], event["details"]["via"]) == ("retract", "ana",
                                                                              "workbench")
    finally:
        context.close()


def test_a_revoked_token_stops_working(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    with Archive(path) as archive:
        made = archive.create_token("ana", by="leila")
    url = f"{base}/-/api/documents/{doc}/annotations"
    context = browser.new_context()
    try:
        headers = {"Authorization": f"Bearer {made['token']}"}
        response = context.request.get(url, headers=headers)
        assert response.status == 200, response.text()
        assert bench["bobs"] in [r["id"] for r in response.json()]
        assert context.request.get(url).status == 401  # nothing without the token
        with Archive(path) as archive:
            archive.revoke_token(made["id"], by="leila")
        response = context.request.get(url, headers=headers)
        assert response.status == 401, response.text()
        assert "error" in response.json()
    finally:
        context.close()
    # a live session beside a revoked token does not save it: the token alone is judged
    context, page = login(browser, base, "ana", f"/-/documents/{doc}")
    try:
        assert page.request.get(url).status == 200  # the session's cookie alone reads
        assert page.request.get(url, headers=headers).status == 401
    finally:
        context.close()


def test_two_annotators_writing_at_once_lose_nothing(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    n = 20
    pages = {}
    contexts = []
    try:
        for name in ("ana", "bob"):
            context, page = login(browser, base, name, f"/-/documents/{doc}")
            contexts.append(context)
            pages[name] = page
        with Archive(path, readonly=True) as archive:
            before = len(list(archive.annotations(doc)))
        # both pages start all their writes before either is awaited
        for name, page in pages.items():
            page.evaluate("""([name, n, doc, length]) => {
              const token = document.getElementById('workbench').dataset.csrftoken;
              window.__writes = Promise.all(Array.from({length: n}, (_, i) => fetch(
                '/-/api/annotations', {method: 'POST', credentials: 'same-origin',
                  headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
                  body: JSON.stringify({document: doc, layer: 'concurrent', start: i % length,
                                        end: i % length + 1, body: name + ' ' + i})})
                .then(r => r.status)));
            }""", [name, n, doc, 10])
        for name, page in pages.items():
            statuses = page.evaluate("() => window.__writes")
            assert statuses == [201] * n, (name, statuses)
    finally:
        for context in contexts:
            context.close()
    with Archive(path, readonly=True) as archive:
        current = list(archive.annotations(doc))
        problems = archive.verify()
    assert len(current) == before + 2 * n
    bodies = {(a["creator"], a["body"]) for a in current if a["layer"] == "concurrent"}
    assert bodies == {(name, f"{name} {i}") for name in ("ana", "bob") for i in range(n)}
    assert problems == []


def test_workbench_reads_leave_the_public_snapshot_alone(browser, bench):
    base, path, doc = bench["base"], bench["path"], bench["doc"]
    snapshot = ensure_snapshot(path)
    folder = sorted(p.name for p in snapshot.parent.iterdir())
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    head = source_head(path)
    context, page = login(browser, base, "eddie", "/-/documents")
    try:
        assert page.locator(f'a[href="/-/documents/{doc}"]').count() >= 1
        for target in (f"/-/documents/{doc}", f"/-/documents/{bench['eng']}", "/-/search?q=Geneva",
                       "/-/search?q=سلام", "/-/documents", "/", "/archive/documents"):
            response = page.goto(base + target)
            assert response.status == 200, target
            assert "/-/login" not in page.url
        page.goto(base + "/-/search?q=Geneva")
        assert "Geneva" in page.inner_text("body")
    finally:
        context.close()
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == digest
    assert source_head(path) == head
    assert ensure_snapshot(path) == snapshot
    assert sorted(p.name for p in snapshot.parent.iterdir()) == folder
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == digest
