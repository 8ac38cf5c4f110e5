"""stet: a provenance-tracking document archive with versioned annotations."""

#: The one place the version is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

from .errors import StetError  # noqa: E402
from .archive import Archive  # noqa: E402

__all__ = ["Archive", "StetError", "__version__"]
