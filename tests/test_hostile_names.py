"""Names and text shown to people (issue 10, item 10): a file name, title, source, author or
layer name carrying ANSI escapes, newlines or bidirectional overrides is shown visibly
escaped on every human-readable line and page, exact in --json, and never in a download's
name; the document text itself is never touched."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
from urllib.parse import unquote

import pytest

from stet.display import UNSAFE, download_name, shown
from stet.serve import prepare

#: An ANSI colour, a forged row, an override that makes "harmless\u202etxt.exe" read as
#: "harmlessexe.txt", and a C1 control (CSI).
NAME = "harmless\x1b[31m\nforged  row\u202etxt.exe\x9b"
SHOWN = "harmless\\x1b[31m\\nforged  row\\u202etxt.exe\\x9b"
#: Persian text with ZWNJ and RLM, and an override inside the text: kept exactly in the text.
TEXT = "می\u200cشود \u200fسند\u202e evil\n"
RAW = ("\x1b", "\n", "\u202e", "\x9b")


def _no_raw(line: str) -> None:
    for ch in RAW:
        assert ch not in line, (ch, line)


@pytest.fixture
def hostile(tmp_path, run):
    path = tmp_path / NAME
    path.write_text(TEXT, encoding="utf-8")
    ingest = run("ingest", path, "--source", "field\x1b]0;pwned\x07 office\u2066",
                 "--by", "ana\x1b[2J")
    annotate = run("annotate", "1", "--layer", "claims\u202eevil", "--quote", "سند",
                   "--body", "line one\nline two\u202e", "--by", "reza\r\x1b[K")
    assert annotate.exit_code == 0, annotate.output
    return {"path": path, "ingest": ingest, "tmp": tmp_path}


def test_the_escape_set():
    for ch in ("\x00", "\t", "\x1b", "\x7f", "\x85", "\x9f", "\u061c", "\u200e", "\u200f",
               "\u2028", "\u2029", "\u202a", "\u202e", "\u2066", "\u2069", "\udcff"):
        assert UNSAFE.fullmatch(ch), repr(ch)
        assert ch not in shown(f"a{ch}b")
    assert shown("a\tb\nc\rd\x1be\u202ef\udcff") == "a\\tb\\nc\\rd\\x1be\\u202ef\\udcff"
    # Persian spelling and emoji sequences need ZWNJ and ZWJ: kept, as is every other letter
    for text in ("می\u200cشود", "👩\u200d💻", "اعلامیهٔ جهانی", "café"):
        assert shown(text) == text
    assert shown(None) == ""
    assert download_name(NAME) == "harmless_[31m_forged  row_txt.exe_"
    assert download_name("", default="abc") == "abc"


def test_ingest_and_documents_show_names_escaped(hostile, run):
    out = hostile["ingest"].stdout
    assert len(out.splitlines()) == 1, out  # no forged row
    _no_raw(out.rstrip("\n"))
    assert out.rstrip("\n").endswith(SHOWN)
    listing = run("documents")
    assert listing.exit_code == 0
    assert len(listing.stdout.splitlines()) == 3  # header, rule, the one row: none forged
    for line in listing.stdout.splitlines():
        _no_raw(line)
    assert listing.stdout.rstrip("\n").endswith(SHOWN)
    # --json, --nl, --csv and --tsv stay exact
    assert json.loads(run("documents", "--json").stdout)[0]["title"] == NAME
    assert json.loads(run("documents", "--nl").stdout)["title"] == NAME
    for flag, dialect in (("--csv", "excel"), ("--tsv", "excel-tab")):
        rows = list(csv.DictReader(io.StringIO(run("documents", flag).stdout, newline=""),
                                   dialect=dialect))
        assert [row["title"] for row in rows] == [NAME]


def test_show_and_log_show_names_escaped(hostile, run):
    show = run("show", "1")
    _no_raw(show.stdout.replace("\n", ""))  # one line per field, nothing more
    assert f"filename:          {SHOWN}\n" in show.stdout
    assert "source:            field\\x1b]0;pwned\\x07 office\\u2066\n" in show.stdout
    assert "ingested_by:       ana\\x1b[2J\n" in show.stdout
    assert json.loads(run("show", "1", "--json").stdout)["filename"] == NAME
    log = run("log")
    assert log.exit_code == 0
    lines = log.stdout.splitlines()
    assert len(lines) == 2 + len(json.loads(run("log", "--json").stdout))  # header, rule, rows
    for line in lines:
        _no_raw(line)
    assert "ana\\x1b[2J" in lines[2] and "reza\\r\\x1b[K" in log.stdout


def test_annotation_lines_show_names_escaped(hostile, run):
    for argv in (["annotations"], ["annotations", "1"], ["history", "1"]):
        result = run(*argv)
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == 3, result.stdout  # header, rule, one row
        for line in result.stdout.splitlines():
            _no_raw(line)
        line = result.stdout.splitlines()[2]
        assert "claims\\u202eevil" in line and "reza\\r\\x1b[K" in line
        assert line.endswith("line one\\nline two\\u202e")
    layers = run("layer", "list")
    for line in layers.stdout.splitlines():
        _no_raw(line)
    assert "claims\\u202eevil" in layers.stdout
    record = json.loads(run("annotations", "--json").stdout)[0]
    assert (record["layer"], record["body"], record["author"]) == \
        ("claims\u202eevil", "line one\nline two\u202e", "reza\r\x1b[K")


@pytest.fixture
def site(hostile):
    ds, _ = prepare(hostile["tmp"] / "archive.db")
    loop = asyncio.new_event_loop()
    yield lambda url: loop.run_until_complete(ds.client.get(url))
    loop.close()


def test_the_document_page_shows_names_escaped_and_the_text_exact(site):
    page = site("/-/documents/1")
    assert page.status_code == 200
    body = page.text
    inside = re.search(r'<div id="document-text"[^>]*>(.*?)</div>', body, re.S).group(1)
    # the text stays exactly as stored, overrides and marks included
    assert html.unescape(re.sub(r"<[^>]+>", "", inside)) == TEXT
    # a note is text too: kept as written, isolated so that it reorders nothing around it
    note = f'<span dir="auto">{html.escape("line one", quote=True)}'
    assert note + "\nline two\u202e</span>" in body
    outside = html.unescape(body.replace(inside, "").replace("line two\u202e", ""))
    outside = outside.replace("\n", "")  # the HTML's own lines
    for ch in RAW + ("\u2066",):
        assert ch not in outside, repr(ch)
    assert f"<h1>{html.escape(SHOWN)}</h1>" in body
    assert f"<title>{html.escape(SHOWN)}</title>" in body
    assert html.escape("field\\x1b]0;pwned\\x07 office\\u2066") in body
    assert html.escape("claims\\u202eevil") in body and html.escape("reza\\r\\x1b[K") in body


def test_the_download_name_carries_no_override(site):
    raw = site("/-/documents/1/raw")
    assert raw.status_code == 200 and raw.content == TEXT.encode("utf-8")
    disposition = raw.headers["content-disposition"]
    name = unquote(disposition.split("filename*=UTF-8''", 1)[1])
    assert name == "harmless_[31m_forged  row_txt.exe_"
    assert not UNSAFE.search(name)


def test_table_cells_and_search_show_names_escaped(site):
    table = site("/archive/documents?_facet=id")
    assert html.escape(SHOWN) in table.text  # the title cell, linked to the page
    assert "harmless\u202e" not in html.unescape(table.text).replace(
        "\\u202e", "")  # the filename cell too
    search = site("/-/search?q=سند")
    assert search.status_code == 200
    assert html.escape(SHOWN) in search.text  # the document's title
    assert html.escape("claims\\u202eevil") in search.text  # the annotation's layer
    assert "claims\u202e" not in search.text and "\x1b" not in search.text
