"""Extraction in a child process, bounded in time (and, per format, in memory).

The parsers of HTML, PDF, DOCX and email are C libraries or deep Python code that a crafted
file can keep busy for minutes (100,000 nested ``<div>``\\ s: 11.6 s in one call that Python
cannot interrupt) or make allocate gigabytes. So :func:`stet.extract.extract` hands those
formats to one long-lived child process per process that extracts (the main process, each
ingest worker): the child is forked on first use, receives ``(media type, bytes)`` through
a pipe and sends back the :class:`~stet.extract.Extraction`. Past the deadline the child
is killed (``SIGKILL``) and the file gets an empty text with the warning ``not extracted:
took longer than N s``; the next file gets a new child. A child that dies (a crash in a C
library, a memory limit) is replaced the same way, with a warning naming how it died.

Memory: before each file the child sets its address-space limit (``RLIMIT_AS``) to what it
uses now plus the extractor's ``memory`` budget (if it has one), so an allocation past it
fails (``MemoryError``) in the child, never in the caller.

Costs (measured on a small HTML page, 2 CPUs): about 0.1 ms per file for the round trip
through the pipe, against 3.5 ms for a fork per file; the fork happens once per process.

Lifecycle: the child closes every descriptor it inherited but its two pipes, so it holds no
one else's pipe open. It exits when its request pipe reaches end of file (its parent closed
it, exited or was killed) and, on Linux, is killed with its parent (``PR_SET_PDEATHSIG``)
even in the middle of a file. A process forked from one that has a child (an ingest worker)
forgets that child and starts its own. :func:`shutdown` ends the child and waits for it
(also registered with :mod:`atexit`).
"""

from __future__ import annotations

import atexit
import os
import pickle
import resource
import select
import signal
import struct
import threading
import time
from typing import Any, Callable

_HEADER = struct.Struct("!Q")
_CHUNK = 1 << 20


class Died(Exception):
    """The child exited, or was killed, before it answered."""


class _Child:
    def __init__(self, serve: Callable[[Any], Any]) -> None:
        requests_in, requests_out = os.pipe()
        results_in, results_out = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 1
            try:
                _detach(parent, keep=(requests_in, results_out))
                _loop(serve, requests_in, results_out)
                code = 0
            finally:
                os._exit(code)
        os.close(requests_in)
        os.close(results_out)
        self.pid, self.requests, self.results, self.owner = pid, requests_out, results_in, parent

    def ask(self, request: Any, deadline: float) -> Any:
        """Send ``request``, return the child's answer; TimeoutError past ``deadline``,
        :class:`Died` if the child is gone (before or while answering)."""
        try:
            _send(self.requests, request)
        except BrokenPipeError:
            raise Died(self.reap()) from None
        try:
            return pickle.loads(_receive(self.results, deadline))
        except EOFError:
            raise Died(self.reap()) from None

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reap()

    def reap(self) -> str:
        """Close the pipes, wait for the child; how it ended, in words."""
        for fd in (self.requests, self.results):
            try:
                os.close(fd)
            except OSError:
                pass
        _, status = os.waitpid(self.pid, 0)
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = str(number)
            return f"was killed by signal {name}"
        return f"exited with status {os.waitstatus_to_exitcode(status)}"

    def close(self, wait: float = 2.0) -> None:
        """End of file on the request pipe: the child exits; killed if it does not soon."""
        os.close(self.requests)
        self.requests = -1
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.results)
                return
            time.sleep(0.005)
        self.kill()


def _detach(parent: int, keep: tuple[int, int]) -> None:
    """In the child: die with the parent, hold no inherited descriptor but ``keep``."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
    low, high = sorted(keep)
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, _max_fd())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 1 << 20 else 1 << 16


def _loop(serve: Callable[[Any], Any], requests: int, results: int) -> None:
    while True:
        try:
            payload = _receive(requests, None)
        except EOFError:
            return
        answer, again = serve(pickle.loads(payload))
        _send(results, answer)
        if not again:
            return


def _send(fd: int, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view[:_CHUNK]):]


def _receive(fd: int, deadline: float | None) -> bytes:
    header = _read(fd, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    return _read(fd, size, deadline)


def _read(fd: int, size: int, deadline: float | None) -> bytes:
    parts = []
    poller = None
    if deadline is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
    while size:
        if poller is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                if time.monotonic() >= deadline:
                    raise TimeoutError
                continue
        chunk = os.read(fd, min(size, _CHUNK))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def limit_memory(budget: int | None) -> int | None:
    """In the child: let the address space grow by at most ``budget`` bytes from now (None:
    back to no limit); the limit set."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if budget is None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return None
    with open("/proc/self/statm", "rb") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    wanted = size + budget
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    return wanted


def peak_memory() -> int:
    """The largest address space this process has had (``VmPeak``), in bytes."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmPeak:"):
                return int(line.split()[1]) * 1024
    return 0


def available() -> bool:
    return hasattr(os, "fork") and hasattr(os, "register_at_fork") and os.path.exists("/proc/self/statm")


class Runner:
    """One child per process, used by one thread at a time."""

    def __init__(self, serve: Callable[[Any], Any]) -> None:
        self.serve = serve
        self.child: _Child | None = None
        self.lock = threading.Lock()
        #: Set in the child itself: extraction there runs in place.
        self.inside = False
        os.register_at_fork(after_in_child=self._forget)
        atexit.register(self.shutdown)

    def _forget(self) -> None:
        """After a fork: the child belongs to the parent; close our copies of its pipes."""
        child, self.child = self.child, None
        self.lock = threading.Lock()
        if child is not None:
            for fd in (child.requests, child.results):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def ask(self, request: Any, timeout: float) -> Any:
        """The child's answer to ``request``; TimeoutError or :class:`Died` (the child is
        then gone, and the next request starts a new one)."""
        with self.lock:
            child = self._child()
            try:
                return child.ask(request, time.monotonic() + timeout)
            except TimeoutError:
                self.child = None
                child.kill()
                raise
            except Died:
                self.child = None
                raise

    def _child(self) -> _Child:
        child = self.child
        if child is not None and child.owner == os.getpid():
            pid, _ = os.waitpid(child.pid, os.WNOHANG)
            if not pid:
                return child
            for fd in (child.requests, child.results):
                os.close(fd)
        self.child = _Child(self._serve_inside)
        return self.child

    def _serve_inside(self, request: Any):
        self.inside = True
        return self.serve(request)

    def shutdown(self) -> None:
        """End the child, if any, and wait for it."""
        with self.lock:
            child, self.child = self.child, None
            if child is not None and child.owner == os.getpid():
                child.close()
