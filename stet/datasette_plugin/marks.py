"""A document's text with its annotations as ``<mark>`` segments: pure functions, no I/O.

Spans are code-point offsets (start inclusive, end exclusive). Overlapping annotations split
the text into segments at every start and end, so each ``<mark>`` carries the full set of
annotations (``data-annotation-ids``) and layers (``data-layers``) covering its characters,
and the text content of the whole is exactly the stored text. Every string is escaped here.
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata
from typing import Iterable

#: One colour per layer, by layer id, when the layer names none (or an unusable one).
PALETTE = ("#ffe08a", "#a8e6a1", "#9fd3ff", "#ffb3c7", "#d7b8ff", "#ffc999", "#b5f0e8",
           "#e8e8a0", "#c4d0ff", "#f5b0a0")
#: What may reach CSS from a layer's colour: #rgb, #rrggbb or a colour name (letters only).
_COLOUR = re.compile(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?|[a-zA-Z]{3,24}")


def escape(value) -> str:
    """HTML-escape any value for text or a quoted attribute; keeps a CR as ``&#13;`` (the
    HTML parser would turn a literal CR or CR LF into LF)."""
    if value is None:
        return ""
    return html.escape(str(value), quote=True).replace("\r", "&#13;")


def layer_colour(layer_id: int, colour: str | None) -> str:
    if colour and _COLOUR.fullmatch(colour.strip()):
        return colour.strip()
    return PALETTE[(layer_id - 1) % len(PALETTE)]


def direction(text: str, sample: int = 4000) -> str:
    """``rtl`` when most strong characters (of the first ``sample``) are right-to-left."""
    rtl = ltr = 0
    for ch in text[:sample]:
        kind = unicodedata.bidirectional(ch)
        if kind in ("R", "AL"):
            rtl += 1
        elif kind == "L":
            ltr += 1
    return "rtl" if rtl > ltr else "ltr"


def render_text(text: str, annotations: Iterable[tuple[int, int, int, int]]) -> str:
    """The HTML inside ``#document-text``. ``annotations`` are ``(id, layer, start, end)``."""
    opening: dict[int, list[tuple[int, int]]] = {}
    closing: dict[int, list[tuple[int, int]]] = {}
    length = len(text)
    for ann_id, layer, start, end in annotations:
        if start is None or end is None:
            continue
        start, end = max(0, start), min(length, end)
        if start >= end:
            continue
        opening.setdefault(start, []).append((ann_id, layer))
        closing.setdefault(end, []).append((ann_id, layer))
    bounds = sorted(set(opening) | set(closing) | {0, length})
    out: list[str] = []
    ids: list[int] = []  # sorted ids of the annotations covering the current segment
    layers: dict[int, int] = {}  # layer id -> how many of those annotations are in it
    for i, pos in enumerate(bounds[:-1]):
        for ann_id, layer in closing.get(pos, ()):
            del ids[bisect.bisect_left(ids, ann_id)]
            layers[layer] -= 1
            if not layers[layer]:
                del layers[layer]
        for ann_id, layer in opening.get(pos, ()):
            bisect.insort(ids, ann_id)
            layers[layer] = layers.get(layer, 0) + 1
        piece = escape(text[pos:bounds[i + 1]])
        if ids:
            on = sorted(layers)
            cls = f"l{on[0]} multi" if len(ids) > 1 else f"l{on[0]}"
            out.append(
                f'<mark data-annotation-ids="{" ".join(map(str, ids))}" '
                f'data-layers="{" ".join(map(str, on))}" class="{cls}" tabindex="0">'
                f"{piece}</mark>"
            )
        else:
            out.append(piece)
    return "".join(out)


def layer_css(layers: Iterable[tuple[int, str]]) -> str:
    """One rule per layer; colours come only from :func:`layer_colour` (never raw input)."""
    return "\n".join(f".l{int(layer_id)}{{--layer:{colour}}}" for layer_id, colour in layers)
