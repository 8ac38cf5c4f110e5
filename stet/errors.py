"""Typed library errors under one base class; the CLI turns them into `Error: ...`, exit 1.

A message that names an argument writes it with :func:`arg`, never as a command-line flag:
``InvalidInput(f"give {arg('include_restricted')} to export it")``. From the library the
message reads ``give include_restricted to export it`` (the parameter's name, as a caller of
the API writes it); the CLI's error wrapper renders the same message with
:func:`render` and a mapping of its own, so that ``stet export`` says
``give --include-restricted to export it``. The name travels between two private-use
characters (U+E000, U+E001), which neither paths nor texts hold in practice, so nothing a
user typed can pass for an argument.
"""

from __future__ import annotations

import re
from typing import Callable

_OPEN, _CLOSE = "\ue000", "\ue001"
_ARG = re.compile(f"{_OPEN}([A-Za-z_][A-Za-z0-9_]*){_CLOSE}")


def arg(name: str) -> str:
    """An argument's name (a parameter of the API: ``include_restricted``) in a message."""
    return f"{_OPEN}{name}{_CLOSE}"


def render(message: str, name: Callable[[str], str] = str) -> str:
    """``message`` with every :func:`arg` written as ``name(argument)``: as it is by default."""
    return _ARG.sub(lambda match: name(match[1]), message)


class StetError(Exception):
    """Base of every error stet reports to a user."""

    @property
    def message(self) -> str:
        """The message with its arguments still marked: to build another message from it."""
        return super().__str__()

    def __str__(self) -> str:
        return render(self.message)


class NotFound(StetError):
    """A document, annotation or path that does not exist."""


class InvalidInput(StetError):
    """Input that stet refuses: a bad span, malformed JSON, an invalid bag..."""


class Ambiguous(StetError):
    """A reference or quote that matches more than one thing."""
