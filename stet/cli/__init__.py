"""The ``stet`` command line: a thin layer over :class:`stet.Archive`.

Each module registers its commands on the one group in :mod:`stet.cli.common`.
"""

import logging

from .common import cli
from . import documents  # noqa: F401  (ingest, documents, show, text, log, verify)
from . import annotations  # noqa: F401  (layer, annotate, revise, retract, annotations, history, export, import)
from . import bags  # noqa: F401  (bag export, prov)
from . import publish  # noqa: F401  (serve, publish)
from . import metadata  # noqa: F401  (restrict, unrestrict, edit)
from . import accounts  # noqa: F401  (user, token)
from . import workbench  # noqa: F401  (workbench)
from . import versions  # noqa: F401  (reanchor, versions)
from . import replicate  # noqa: F401  (replicate, restore)
from . import store  # noqa: F401  (store show, set, migrate, gc)

# bagit logs each problem of a bag as it finds it; the command line reports them once, in one
# Error line (the library leaves other packages' loggers as they are).
logging.getLogger("bagit").addHandler(logging.NullHandler())
logging.getLogger("bagit").propagate = False

__all__ = ["cli"]
