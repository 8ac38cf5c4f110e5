"""The workbench: the live archive served to logged-in accounts, with writing.

- :mod:`stet.workbench.app`: :func:`make_workbench` (a Datasette on the live archive) and
  :func:`run` (``stet workbench``);
- :mod:`stet.workbench.session`: the login, sessions, the throttle on failed logins, and the
  gate that sends anyone without a session to the login;
- :mod:`stet.workbench.api`: the JSON API for tools and for the workbench's own pages;
- :mod:`stet.workbench.pages`: what the document page gains for staff, the documents list;
- :mod:`stet.workbench.search`: the private full-text index of the live archive.

See ``docs/workbench.md``.
"""

from .app import API_PREFIX, is_workbench, make_workbench, run

__all__ = ["API_PREFIX", "is_workbench", "make_workbench", "run"]
