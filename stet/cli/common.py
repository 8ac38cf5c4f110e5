"""What every command shares: the group, ``--db``, ``--by``, ``--json``, errors, progress."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import sys
from typing import Any, Iterable

import click

from .._version import __version__
from ..archive import Archive, default_user
from ..errors import StetError, render


@click.group()
@click.version_option(__version__, prog_name="stet")
def cli() -> None:
    """stet: a provenance-tracking document archive with versioned annotations.

    Every byte kept as received, every mark on a text signed, dated and never lost.
    Every command takes --db (default archive.db, or $STET_DB).

    \b
    Example:
        stet ingest ingest/ --source https://example.org/press
        stet documents
        stet verify
    """


def db_option(fn):
    return click.option(
        "--db", "db_path", type=click.Path(dir_okay=False), envvar="STET_DB",
        default="archive.db", show_default=True, help="The archive file ($STET_DB).",
    )(fn)


def by_option(fn):
    return click.option(
        "--by", default=None, envvar="STET_USER", callback=_named,
        help="Who does this ($STET_USER, else the login name).",
    )(fn)


def _named(ctx, param, value):
    """``--by`` given must name someone: an empty (or blank) name is refused, not replaced
    by the login name."""
    if value is not None and not value.strip():
        raise click.UsageError("--by needs a name", ctx=ctx)
    return value


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def reason_options(fn):
    """What every recorded change takes (restrict, unrestrict, edit, layer rename and merge):
    a required --reason kept in its event, --by, --json, --db, and the errors wrapper."""
    for option in reversed((click.option("--reason", required=True,
                                         help="Why (kept in the record)."),
                            by_option, json_option, db_option, errors)):
        fn = option(fn)
    return fn


def silent_option(fn):
    return click.option("-s", "--silent", is_flag=True, help="No progress bar.")(fn)


#: The options whose flag is not the library parameter's name with ``--`` and hyphens.
FLAGS = {"tags": "--tag"}


def flag(parameter: str) -> str:
    """The option of the command line that gives a library ``parameter``."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def message(exc: StetError) -> str:
    """A library error's message as the command line says it: each argument it names
    (:func:`stet.errors.arg`) written as its option (``--include-restricted``)."""
    return render(exc.message, flag)


def errors(fn):
    """Turn library errors into ``Error: ...`` on stderr with exit code 1, each argument
    they name written as the command line's option (:func:`message`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StetError as exc:
            raise click.ClickException(message(exc)) from exc
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise click.ClickException(
                    f"{kwargs.get('db_path', 'the archive')} is busy: another write held it for "
                    "longer than the 30-second timeout (a large import?); nothing was written, "
                    "try again") from exc
            raise click.ClickException(f"{kwargs.get('db_path', 'the archive')}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            raise click.ClickException(f"{kwargs.get('db_path', 'the archive')}: {exc}") from exc

    return wrapper


def open_archive(db_path: str, *, create: bool = False, readonly: bool = False,
                 check: bool = True) -> Archive:
    """Open the archive; reading commands refuse a file that does not exist yet, and with
    ``readonly`` write nothing at all to it (not even a change of journal mode, nor a ``-wal``
    or ``-shm`` file left beside it): every command that does not write opens it so. A
    read-only open refuses an archive that needs migrating, unless ``check`` is false (only
    ``stet verify``, which reports a damaged schema as problems)."""
    if not create and not os.path.exists(db_path):
        raise click.ClickException(f"no archive at {db_path} (ingest something first, or give --db)")
    archive = Archive(db_path, readonly=readonly, check=check)
    # Closed when the command ends, not whenever the collector gets to it: the last
    # connection to close a WAL archive is the one that removes its -wal and -shm files.
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(archive.close)
    return archive


def user(by: str | None) -> str:
    return by or default_user()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def echo_json_lines(values: Iterable[Any]) -> None:
    echo_lines(json.dumps(value, ensure_ascii=False) for value in values)


def echo_lines(lines: Iterable[str], *, err: bool = False, chunk: int = 1000) -> None:
    """Lines written a thousand at a time: one write (and flush) per line costs a system
    call each, which shows when an ingest reports 20,000 files."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= chunk:
            click.echo("\n".join(batch), err=err)
            batch.clear()
    if batch:
        click.echo("\n".join(batch), err=err)


def on_terminal() -> bool:
    """Whether stdout is a terminal: a person watching, who gets progress bars."""
    return sys.stdout.isatty()


def progressbar(items, *, silent: bool, label: str, **kwargs):
    """A progress bar on a terminal; nothing when silent or when stdout is not a terminal."""
    if silent or not on_terminal():
        return _Quiet(items)
    return click.progressbar(items, label=label, file=sys.stderr, **kwargs)


def progress(*, silent: bool, label: str):
    """The ``progress`` callback the library's long operations take (``verify``, ``publish``,
    ``import_``, ``bag_export``): given the total, a bar on stderr yielding ``advance(n)``.
    None (no counting at all) when silent or when stdout is not a terminal."""
    if silent or not on_terminal():
        return None

    @contextlib.contextmanager
    def bar(total: int):
        with progressbar(None, silent=False, label=label, length=max(total, 1)) as shown:
            yield shown.update

    return bar


class _Quiet:
    def __init__(self, items) -> None:
        self.items = items

    def __enter__(self):
        return self if self.items is None else self.items

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int) -> None:
        return None
