"""Typed library errors under one base class; the CLI turns them into `Error: ...`, exit 1."""


class StetError(Exception):
    """Base of every error stet reports to a user."""


class NotFound(StetError):
    """A document, annotation or path that does not exist."""


class InvalidInput(StetError):
    """Input that stet refuses: a bad span, malformed JSON, an invalid bag..."""


class Ambiguous(StetError):
    """A reference or quote that matches more than one thing."""
