"""Anchoring: from a span or a quote to checked offsets in a document's stored text.

Offsets are Unicode code points into the stored text, start inclusive, end exclusive, as
the W3C TextPositionSelector defines them; Python ``str`` indexes the same way, so
``text[start:end]`` is the quote. Nothing here normalizes: a ZWNJ, a combining mark or one
code point of an emoji ZWJ sequence counts as one position, as stored.

``prefix`` and ``suffix`` are the :data:`CONTEXT` code points either side of the span (fewer
at the ends of the text), as the W3C TextQuoteSelector and Hypothesis keep them.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import Ambiguous, InvalidInput, NotFound, arg

#: Code points of context kept on each side of a span.
CONTEXT = 32


class Anchor(NamedTuple):
    start: int
    end: int
    exact: str
    prefix: str
    suffix: str


def anchor(text: str, start: int, end: int) -> Anchor:
    """The anchor of a checked span: quote and context from the text itself."""
    check_span(text, start, end)
    return Anchor(start, end, text[start:end], text[max(0, start - CONTEXT):start],
                  text[end:end + CONTEXT])


def check_span(text: str, start, end) -> None:
    """Refuse a span that is not ``0 <= start < end <= len(text)`` (integers)."""
    if isinstance(start, bool) or isinstance(end, bool) or not (
        isinstance(start, int) and isinstance(end, int)
    ):
        raise InvalidInput(f"span {start}:{end}: start and end must be integers")
    if not 0 <= start < end <= len(text):
        raise InvalidInput(
            f"span {start}:{end} is not within the text: need 0 <= start < end <= {len(text)}"
        )


def find_all(text: str, quote: str, prefix: str | None = None,
             suffix: str | None = None) -> list[int]:
    """Start offsets of every occurrence of ``quote`` (overlapping ones too) that is
    preceded by ``prefix`` and followed by ``suffix`` where they are given."""
    found = []
    at = text.find(quote)
    while at != -1:
        end = at + len(quote)
        if (not prefix or text.endswith(prefix, 0, at)) and (
            not suffix or text.startswith(suffix, end)
        ):
            found.append(at)
        at = text.find(quote, at + 1)
    return found


def find_quote(text: str, quote: str, prefix: str | None = None,
               suffix: str | None = None) -> Anchor:
    """The one place where ``quote`` occurs (within ``prefix``/``suffix`` if given).

    No match is :class:`NotFound`; more than one is :class:`Ambiguous`, saying how many.
    """
    if not quote:
        raise InvalidInput("the quote is empty")
    starts = find_all(text, quote, prefix, suffix)
    context = " with that prefix/suffix" if prefix or suffix else ""
    if not starts:
        raise NotFound(f"quote {_show(quote)} not found in the text{context}")
    if len(starts) > 1:
        raise Ambiguous(
            f"quote {_show(quote)} matches {len(starts)} places in the text{context}: "
            f"add {arg('prefix')} or {arg('suffix')} (the text just before or after it) "
            "to choose one"
        )
    return anchor(text, starts[0], starts[0] + len(quote))


def reanchor(text: str, start: int | None, end: int | None, exact: str | None,
             prefix: str | None = None, suffix: str | None = None) -> Anchor:
    """Anchor an imported selector: by position when the quote is there, else by quote.

    A position whose text is not ``exact`` falls back to finding ``exact`` with its
    prefix/suffix (the text may have been extracted differently), then ``exact`` alone;
    that must match exactly once.
    """
    if start is not None and end is not None:
        check_span(text, start, end)
        if exact is None or text[start:end] == exact:
            return Anchor(start, end, text[start:end], text[max(0, start - CONTEXT):start],
                          text[end:end + CONTEXT])
        if not exact:
            raise InvalidInput(f"span {start}:{end}: the quote is empty")
    elif exact is None:
        raise InvalidInput("the target has neither a position nor a quote")
    try:
        return find_quote(text, exact, prefix, suffix)
    except (NotFound, Ambiguous) as exc:
        if isinstance(exc, NotFound) and (prefix or suffix):
            # the context may differ in a re-extracted text: the quote alone, if it is unique
            alone = find_all(text, exact)
            if len(alone) == 1:
                return anchor(text, alone[0], alone[0] + len(exact))
        where = f"the text at {start}:{end} is not the quote, and " if start is not None else ""
        raise InvalidInput(f"{where}{exc}") from None


def _show(quote: str, limit: int = 40) -> str:
    shown = quote if len(quote) <= limit else quote[:limit] + "…"
    return repr(shown)
