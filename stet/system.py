"""What stet asks of the operating system: how many CPUs it may use, and files opened safely.

``open()`` of a FIFO blocks until a writer appears, and a device may block or answer
forever. Every file stet ingests or validates (a file in a folder, a bag's payload and tag
files) is opened by :func:`open_regular`: without blocking (``O_NONBLOCK``, so that opening
a FIFO returns at once), checked on the opened descriptor (``fstat``, after any symbolic
link was followed, so nothing can be swapped in between a check and the open), and only then
read, in blocking mode again. Anything but a regular file is refused with an ``OSError``
whose message is ``not a regular file`` (``is a directory`` for a folder).

This module sits below :mod:`stet.bags` and :mod:`stet.ingest` (which uses bags), so both
can use it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
          | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def cpus() -> int:
    """The CPUs this process may run on (its affinity on Linux), at least 1."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class NotRegularFile(OSError):
    """A FIFO, socket or device where a file was expected."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` for a regular file (symbolic links followed); OSError otherwise."""
    fd = os.open(path, _FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", os.fspath(path))
        if _FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def reason(exc: OSError) -> str:
    """Why a file could not be read, in words for a message (``no such file or directory``)."""
    return exc.strerror.lower() if exc.strerror else str(exc)
