"""The document page in a real browser: Debian's Chromium driven by Playwright's Python package.

What only a browser shows: the highlighted text under the marks, layers switched off and on,
annotations shown on hover and focus, and a selection reported in code points (the browser
counts UTF-16 units). A screenshot goes to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import threading
import time

import pytest

from stet import Archive
from stet.serve import prepare

from test_datasette import ROOT, build_sample

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not pathlib.Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: `make test` installs Debian's "
                    "chromium package when run as root (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is missing: pip install -e '.[test]'")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield instance
        instance.close()


@contextlib.contextmanager
def served(app):
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a thread; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # waiting for start-up, not timing anything
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The sample archive served by uvicorn on 127.0.0.1, in a thread."""
    info = build_sample(tmp_path_factory.mktemp("browser"))
    ds, _ = prepare(info["path"], metadata=ROOT / "metadata.yml")
    with served(ds.app()) as base:
        info["base"] = base
        yield info


# Where code point `target` falls in the DOM: walk the text nodes counting code points
# (independently of the page's own script, which converts the other way).
SELECT = """([start, end]) => {
  const root = document.getElementById('document-text');
  function locate(target) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let seen = 0, node;
    while ((node = walker.nextNode())) {
      const chars = Array.from(node.data);
      if (seen + chars.length >= target) {
        return [node, chars.slice(0, target - seen).join('').length];
      }
      seen += chars.length;
    }
    throw new Error('offset ' + target + ' is past the end');
  }
  const [a, ao] = locate(start), [b, bo] = locate(end);
  const range = document.createRange();
  range.setStart(a, ao); range.setEnd(b, bo);
  const selection = window.getSelection();
  selection.removeAllRanges(); selection.addRange(range);
  const offsets = window.stetSelectionOffsets();
  return [selection.toString(), Number(offsets[0]), Number(offsets[1])];
}"""

MARKED = """() => {
  const byId = {};
  document.querySelectorAll('#document-text mark').forEach(mark => {
    mark.dataset.annotationIds.split(' ').forEach(id => {
      (byId[id] = byId[id] || []).push(mark.textContent);
    });
  });
  const out = {};
  for (const id in byId) out[id] = byId[id].join('');
  return out;
}"""


def test_document_page_in_chromium(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{site['base']}/-/documents/{site['pes']}")
    text = page.eval_on_selector("#document-text", "el => el.textContent")
    assert text == site["pes_text"]
    assert page.eval_on_selector("#document-text", "el => getComputedStyle(el).direction") == "rtl"

    with Archive(site["path"]) as archive:
        current = {str(a["id"]): a for a in archive.annotations(site["pes"])}
        layers = {layer["name"]: layer["id"] for layer in archive.layers()}
    marked = page.evaluate(MARKED)
    assert set(marked) == set(current)
    for ann_id, joined in marked.items():
        assert joined == current[ann_id]["exact"], ann_id

    # switching the claims layer off hides the marks that are only in it, and on again
    claims = str(layers["claims"])
    only_claims = f'#document-text mark[data-layers="{claims}"]'
    assert page.locator(only_claims).count() > 0
    colour = page.eval_on_selector(only_claims, "el => getComputedStyle(el).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")
    page.uncheck(f'#layer-panel input[data-layer="{claims}"]')
    hidden = page.eval_on_selector_all(
        only_claims, "els => els.map(el => [el.className, getComputedStyle(el).backgroundColor])")
    assert hidden and all(cls == "off" and bg == "rgba(0, 0, 0, 0)" for cls, bg in hidden)
    others = page.eval_on_selector_all(
        f'#document-text mark:not([data-layers="{claims}"])',
        "els => els.map(el => getComputedStyle(el).backgroundColor)")
    assert others and all(bg != "rgba(0, 0, 0, 0)" for bg in others)
    page.check(f'#layer-panel input[data-layer="{claims}"]')
    restored = page.eval_on_selector_all(only_claims, "els => els.map(el => el.className)")
    assert all(cls.startswith("l") for cls in restored)

    # hover and keyboard focus show author, time and body outside the text
    title = current[str(site["anns"]["title"])]
    page.hover(f'#document-text mark[data-annotation-ids="{title["id"]}"]')
    details = page.inner_text("#annotation-details")
    assert title["body"] in details and title["author"] in details and title["modified"] in details
    zwnj = current[str(site["anns"]["zwnj"])]
    page.focus(f'#document-text mark[data-annotation-ids~="{zwnj["id"]}"]')
    details = page.inner_text("#annotation-details")
    assert zwnj["body"] in details and "<script>" in details  # escaped, so shown as text
    assert page.evaluate("() => window.__xss === undefined")

    # a selection maps to code points: a word with a ZWNJ far into the text
    start, end = zwnj["start"], zwnj["end"]
    selected, got_start, got_end = page.evaluate(SELECT, [start, end])
    assert "\u200c" in selected and selected == site["pes_text"][start:end]
    assert (got_start, got_end) == (start, end)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "document-page-persian.png"), full_page=False)

    # and past an emoji (4 UTF-16 units, 2 code points: 👋 and a skin tone)
    page.goto(f"{site['base']}/-/documents/{site['emoji']}")
    emoji_text = site["emoji_text"]
    for word in ("👋🏽", "دنیا", "می\u200cخواهم", "🙂 ok"):
        start = emoji_text.index(word)
        selected, got_start, got_end = page.evaluate(SELECT, [start, start + len(word)])
        assert selected == word
        assert (got_start, got_end) == (start, start + len(word)), word
    assert page.get_attribute("#document-text", "dir") == "rtl"
    page.close()
