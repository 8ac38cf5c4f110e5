"""stet: a provenance-tracking document archive with versioned annotations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stet")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.0.0"

from .errors import StetError  # noqa: E402
from .archive import Archive  # noqa: E402

__all__ = ["Archive", "StetError", "__version__"]
