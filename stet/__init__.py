"""stet: a provenance-tracking document archive with versioned annotations."""

from ._version import __version__
from .errors import StetError
from .archive import Archive

__all__ = ["Archive", "StetError", "__version__"]
