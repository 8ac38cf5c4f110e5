"""The ``stet`` command line: a thin layer over :class:`stet.Archive`.

Each module registers its commands on the one group in :mod:`stet.cli.common`.
"""

from .common import cli
from . import documents  # noqa: F401  (ingest, documents, show, text, log, verify)

__all__ = ["cli"]
