"""The pure part of the document page: segments, escaping, colours, direction."""

from __future__ import annotations

import re

from stet.datasette_plugin.marks import PALETTE, direction, escape, layer_colour, layer_css, render_text

from test_datasette import parse_page


def page(text, annotations):
    return parse_page(f'<div id="document-text">{render_text(text, annotations)}</div>')


def test_overlapping_and_nested_spans_split_into_segments():
    text = "abcdefghij"
    parsed = page(text, [(1, 1, 0, 6), (2, 2, 3, 9), (3, 1, 4, 5)])
    assert "".join(parsed.text) == text
    assert [(m["text"], m["data-annotation-ids"], m["data-layers"]) for m in parsed.marks] == [
        ("abc", "1", "1"), ("d", "1 2", "1 2"), ("e", "1 2 3", "1 2"), ("f", "1 2", "1 2"),
        ("ghi", "2", "2"),
    ]
    assert parsed.marks[1]["class"] == "l1 multi" and parsed.marks[4]["class"] == "l2"


def test_identical_spans_and_text_edges():
    parsed = page("ab", [(5, 1, 0, 2), (4, 1, 0, 2)])
    assert [(m["text"], m["data-annotation-ids"], m["data-layers"]) for m in parsed.marks] == [
        ("ab", "4 5", "1")]
    assert render_text("", [(1, 1, 0, 1)]) == ""
    assert page("abc", [(1, 1, 2, 99), (2, 1, None, None)]).marks[0]["text"] == "c"


def test_text_is_escaped_and_keeps_cr():
    text = "<b>&\r\n\"'</b>"
    html = render_text(text, [(1, 1, 0, 3)])
    assert "<b>" not in html and "&#13;" in html
    assert "".join(page(text, [(1, 1, 0, 3)]).text) == text
    assert escape('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"


def test_colours_never_carry_css():
    assert layer_colour(1, "#abc") == "#abc" and layer_colour(2, "teal") == "teal"
    assert layer_colour(3, "red;}</style><script>") == PALETTE[2]
    assert layer_colour(1, None) == PALETTE[0]
    css = layer_css([(1, layer_colour(1, "x;}body{display:none")), (2, "#123456")])
    assert re.fullmatch(r"(\.l\d+\{--layer:[#a-zA-Z0-9]+\}\n?)+", css)


def test_direction():
    assert direction("اعلامیه جهانی حقوق بشر, in English: UDHR") == "rtl"
    assert direction("The Universal Declaration, اعلامیه") == "ltr"
    assert direction("") == "ltr"
