"""How listing commands print their rows: one option bundle and one writer, as sqlite-utils'
``output_options`` (``--json``, ``--nl``, ``--csv``, ``--tsv``, ``-t/--table``).

Every listing command (``documents``, ``annotations``, ``history``, ``log``, ``layer list``)
takes :func:`output_options` and hands its rows to :func:`write`. The library returns
iterators, and the writer streams them:

- ``--json``: a JSON array, indented by two spaces (the same text as ``json.dumps(rows,
  indent=2)``), written one record at a time;
- ``--nl``: JSON Lines, one object per line;
- ``--csv`` / ``--tsv``: a header row (the first record's keys), then one row per record, as
  Python's ``csv`` module writes the ``excel`` and ``excel-tab`` dialects (``\\r\\n`` line ends,
  fields quoted where needed); None is an empty field, a boolean ``1`` or ``0`` (as SQLite and
  Datasette's CSV have it), a list or an object its JSON;
- ``-t/--table`` (the default): the columns people read, aligned by ``tabulate`` with a header,
  every name escaped with :func:`stet.display.shown`.

The four machine formats carry every field, exact. ``--table`` aligns the rows one window of
:data:`TABLE_WINDOW` at a time, so memory stays flat however long the listing: a listing of
up to that many rows is exactly ``tabulate``'s table, and past it a column only ever widens
(a row wider than every earlier one shifts the rows after it, never those before).

Nothing is printed before the first record has been read: a query that fails (an unknown
layer, a bad time) fails before any output, and the error is the only line.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import sys
from typing import Any, Callable, Iterable, Iterator

import click
import tabulate as tabulate_module
from tabulate import tabulate

from ..display import shown

FORMATS = ("json", "nl", "csv", "tsv", "table")
#: Rows aligned together by ``--table`` (and written together by every format).
TABLE_WINDOW = 1000

Table = Callable[[dict[str, Any]], dict[str, Any]]


def output_options(fn):
    """``--json``, ``--nl``, ``--csv``, ``--tsv``, ``-t/--table``: at most one; the command
    receives ``fmt``, one of :data:`FORMATS` (``table`` when none is given)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        chosen = [name for name in FORMATS if kwargs.pop(f"fmt_{name}")]
        if len(chosen) > 1:
            raise click.UsageError(
                "give only one of " + ", ".join(f"--{name}" for name in chosen))
        return fn(*args, fmt=chosen[0] if chosen else "table", **kwargs)

    for option in reversed((
        click.option("--json", "fmt_json", is_flag=True, help="A JSON array, every field exact."),
        click.option("--nl", "fmt_nl", is_flag=True, help="JSON Lines: one object per line."),
        click.option("--csv", "fmt_csv", is_flag=True, help="CSV with a header row."),
        click.option("--tsv", "fmt_tsv", is_flag=True, help="TSV with a header row."),
        click.option("-t", "--table", "fmt_table", is_flag=True,
                     help="An aligned table with a header, names escaped (the default)."),
    )):
        wrapper = option(wrapper)
    return wrapper


def write(rows: Iterable[dict[str, Any]], fmt: str, *, table: Table | None = None) -> None:
    """Print ``rows`` in ``fmt``, streaming; ``table`` maps a record to the columns
    ``--table`` shows (default: every field)."""
    rows = iter(rows)
    first = next(rows, None)  # errors in the query surface here, before any output
    if fmt == "json":
        _echo_chunks(_json_array(first, rows))
        return
    if first is None:
        return
    rows = itertools.chain([first], rows)
    if fmt == "nl":
        _echo_chunks(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    elif fmt in ("csv", "tsv"):
        _echo_chunks(_delimited(rows, "excel" if fmt == "csv" else "excel-tab"))
    elif fmt == "table":
        _echo_chunks(_table(map(table, rows) if table else rows), chunk=1)
    else:
        raise ValueError(f"unknown output format {fmt!r}")


def _echo_chunks(pieces: Iterable[str], chunk: int | None = None) -> None:
    """Pieces of text written ``chunk`` at a time (one write per row costs a system call
    each), to stdout as they are: not through ``click.echo``, which strips ANSI escapes from
    what is not a terminal, and CSV and TSV carry every character exactly."""
    out = sys.stdout
    it = iter(pieces)
    while batch := "".join(itertools.islice(it, chunk or TABLE_WINDOW)):
        out.write(batch)
        out.flush()


def _json_array(first: dict[str, Any] | None, rest: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The text of ``json.dumps(list(rows), indent=2, ensure_ascii=False)``, one record at a time."""
    if first is None:
        yield "[]\n"
        return
    yield "["
    separator = "\n"
    for row in itertools.chain([first], rest):
        yield separator + "  " + json.dumps(row, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        separator = ",\n"
    yield "\n]\n"


def _field(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _delimited(rows: Iterator[dict[str, Any]], dialect: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect=dialect)
    header = None
    for row in rows:
        if header is None:
            header = list(row)
            writer.writerow(header)
        writer.writerow([_field(row.get(key)) for key in header])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return shown(", ".join(map(str, value)))
    return shown(value)


def _numeric(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in present)


def _table(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """An aligned table (``tabulate``'s ``simple`` format), one piece of text per window.

    The first window fixes the header and each column's alignment (numbers to the right);
    each later window is laid out with the header padded to the widths reached so far, and
    printed without it, so its columns line up with the rows above unless a cell is wider."""
    headers: list[str] = []
    align: list[str] = []
    widths: list[int] = []
    while window := list(itertools.islice(rows, TABLE_WINDOW)):
        first = not headers
        if first:
            headers = list(window[0])
            align = ["right" if _numeric([r.get(h) for r in window]) else "left"
                     for h in headers]
            heading = headers
        else:  # tabulate makes a column its header's width plus MIN_PADDING, at least
            heading = [h.ljust(w - tabulate_module.MIN_PADDING) for h, w in zip(headers, widths)]
        text = tabulate([[_cell(r.get(h)) for h in headers] for r in window],
                        headers=heading, tablefmt="simple", disable_numparse=True,
                        colalign=align)
        lines = text.split("\n")
        widths = [len(dashes) for dashes in lines[1].split("  ")]
        yield "".join(line.rstrip() + "\n" for line in (lines if first else lines[2:]))
