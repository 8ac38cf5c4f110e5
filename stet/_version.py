"""The one place stet's version is written: every module imports it from here, and
pyproject.toml reads it from here (``stet._version.__version__``)."""

__version__ = "0.1.0"
