"""Validating a bag before anything of it is ingested (see :mod:`stet.bags`): every problem
collected and reported once, naming the failing files."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import bagit

from ..errors import InvalidInput
from ..hashing import sha256_file
from ..system import open_regular, reason
from .tagfile import TAG_FILE, payload_order, read_records, record_state

#: bagit's private methods stet relies on, each checked by ``tests/test_bags.py`` against the
#: installed bagit (pinned below 2 in pyproject.toml): the validation steps bagit-python's
#: public ``validate()`` runs in one go, which stet runs one by one to report every problem
#: of a bag once, and between which it checks what bagit would open (regular files inside
#: the bag) and hashes the payload itself.
BAGIT_PRIVATE = ("_validate_structure", "_validate_bagittxt", "_validate_completeness")

_BAGIT_TXT_LINE = re.compile(r"(BagIt-Version|Tag-File-Character-Encoding): (\S.*)")
#: The files at a bag's top that bagit opens itself (and stet's tag file).
_TAG_FILES = re.compile(r"bagit\.txt|bag-info\.txt|package-info\.txt|fetch\.txt|"
                        r"(tag)?manifest-\w+\.txt|" + re.escape(TAG_FILE))
_MISSING = "in the manifest, missing on disk"
_OUT_OF_BAG = "a symbolic link that leads out of the bag"
#: How many names a message lists before "and N more".
_SHOWN = 5


def is_bag(path: str | os.PathLike) -> bool:
    """A folder with ``bagit.txt`` at its top, or one that looks like a bag without it
    (a ``data`` folder beside a ``manifest-*.txt``), which validation will then refuse."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "bagit.txt")):
        return True
    if not os.path.isdir(os.path.join(path, "data")):
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return "data" in names and any(re.fullmatch(r"manifest-\w+\.txt", n) for n in names)


@dataclass
class ValidBag:
    """A bag that passed validation: its payload files and what to record of it."""

    path: str
    version: str
    info: dict[str, Any]
    payload: list[str] = field(default_factory=list)  # paths relative to the bag, in order
    #: A stet bag's records (:data:`TAG_FILE`) by payload path; empty for any other bag.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Each payload file's SHA-256 as validated: the bytes its manifests vouch for.
    sha256: dict[str, str] = field(default_factory=dict)
    #: The SHA-256 of each manifest and tag manifest file, by name.
    manifests: dict[str, str] = field(default_factory=dict)
    size: int = 0  # the payload's bytes
    #: The bag's public name (relative to the folder that was ingested, or its folder's
    #: name), set by the ingest that found it.
    name: str | None = None

    def event_details(self) -> dict[str, Any]:
        """What the ``bag`` event records of the bag, once for all its payload files: where
        it was (``path``, absolute; ``name``, public), its BagIt version, its whole
        ``bag-info.txt``, the payload measured (files and bytes) and the SHA-256 of each of
        its manifest and tag manifest files."""
        return {"path": self.path, "name": self.name or os.path.basename(self.path),
                "bagit_version": self.version, "bag_info": self.info,
                "payload": {"files": len(self.payload), "bytes": self.size},
                "manifests": self.manifests}

    def details(self, relative: str) -> dict[str, Any]:
        """The provenance recorded with one payload file's ingest event: ``bag`` (its path in
        the bag, ``file``; the ingest adds the ``event`` number and ``hash`` of the bag's
        event). For a stet bag, also the document's current ``restricted``, ``source`` and
        ``title`` in the archive it came from (the ingest applies them), and that archive's
        record of it as ``original``: who ingested it and when, its id, title, source,
        message (``parent``) and events there, and the head of that archive's chain when the
        bag was made."""
        details: dict[str, Any] = {"bag": {"file": relative}}
        record = self.records.get(relative)
        if record is None:
            return details
        document, state = record["document"], record_state(record)
        head = self.info.get("Stet-Event-Chain-Head")
        details.update(
            restricted=bool(state["restricted"] or state["hidden"]),
            source=state["source"],
            title=state["title"],
            original={
                "archive_event_head": head[0] if isinstance(head, list) else head,
                **{key: document[key] for key in (
                    "id", "sha256", "title", "source", "ingested_by", "ingested_at", "parent",
                    "supersedes")},
                "events": record["events"],
            },
        )
        return details


@dataclass
class BagFile:
    """One payload file of a valid bag, as the ingest carries it to the writer."""

    bag: ValidBag
    relative: str  # its path in the bag (``data/...``)

    @property
    def sha256(self) -> str:
        return self.bag.sha256[self.relative]


def open_bag(path: str | os.PathLike) -> ValidBag:
    """Validate the bag at ``path`` completely; raise InvalidInput naming every failing file."""
    path = os.path.abspath(os.fspath(path))
    shown = os.fspath(path)
    prefix = f"invalid bag {shown}"
    _check_tag_files(path, prefix)
    if not os.path.isfile(os.path.join(path, "bagit.txt")):
        raise InvalidInput(f"{prefix}: bagit.txt is missing")
    _check_bagit_txt(path, prefix)
    try:
        bag = bagit.Bag(path)
        bag._validate_structure()
        bag._validate_bagittxt()
    except bagit.BagError as exc:
        raise InvalidInput(f"{prefix}: {_strip(str(exc), path)}") from None
    _check_manifest_paths(bag, prefix)
    _check_fetch(bag, path, prefix)
    try:
        bag.validate_fetch()
    except bagit.BagError as exc:
        raise InvalidInput(f"{prefix}: {_strip(str(exc), path)}") from None
    problems: dict[str, list[str]] = {}
    try:
        bag._validate_completeness()
    except bagit.BagValidationError as exc:
        _collect(exc, problems)
    payload = sorted(bag.payload_files())
    sha256 = _check_entries(bag, path, set(payload), problems)
    for reasons in problems.values():  # a missing file's checksums cannot match: say missing
        if _MISSING in reasons:
            reasons[:] = [r for r in reasons if not r.endswith(" mismatch")]
    size = sum(os.stat(os.path.join(path, p)).st_size for p in payload)
    oxum = _oxum_problem(bag, size, payload)
    if problems or oxum:
        listed = [f"{name} ({', '.join(sorted(set(reasons)))})"
                  for name, reasons in sorted(problems.items())]
        if len(listed) > 20:
            listed = listed[:20] + [f"and {len(listed) - 20} more"]
        if oxum:
            listed.append(oxum)
        raise InvalidInput(f"{prefix}: " + "; ".join(listed))
    records = read_records(bag, path, payload, prefix)
    manifests = {}
    for manifest in sorted([*bag.manifest_files(), *bag.tagmanifest_files()]):
        with open_regular(manifest) as stream:
            manifests[os.path.basename(manifest)] = sha256_file(stream)[0]
    return ValidBag(path, ".".join(map(str, bag.version_info)), dict(bag.info),
                    payload_order(payload, records), records, sha256, manifests, size)


def _listed(names: list[str]) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _inside(real: str, root: str) -> bool:
    return real.startswith(root + os.sep)


def _check_tag_files(path: str, prefix: str) -> None:
    """Every file at the bag's top that bagit opens itself (``bagit.txt``, the manifests,
    ``bag-info.txt``, ``fetch.txt``...) is a regular file inside the bag: opening a FIFO
    would wait forever, and a link out of the bag would record another file as its info."""
    root = os.path.realpath(path)
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise InvalidInput(f"{prefix}: {reason(exc)}") from None
    for name in names:
        if not _TAG_FILES.fullmatch(name):
            continue
        location = os.path.join(path, name)
        if not _inside(os.path.realpath(location), root):
            raise InvalidInput(f"{prefix}: {name}: {_OUT_OF_BAG}")
        try:
            open_regular(location).close()
        except OSError as exc:
            raise InvalidInput(f"{prefix}: {name}: {reason(exc)}") from None


def _leaves(name: str, folder: str | None) -> bool:
    """Whether a path from a manifest or ``fetch.txt`` leads out of ``folder`` (``data``), or
    out of the bag (None), once normalized. A backslash counts as a separator here (it is
    one on Windows, where a bag may be read next); a path that starts with ``/``, ``~`` or
    a drive letter leads out."""
    text = name.replace("\\", "/")
    if text.startswith(("/", "~")) or re.match(r"[A-Za-z]:", text):
        return True
    normal = posixpath.normpath(text)
    if folder is not None:
        return not normal.startswith(folder + "/")
    return normal == ".." or normal.startswith("../")


def _manifest_lines(bag, manifest: str) -> Iterable[str]:
    """The paths a manifest lists, as written (bagit's own reading of it normalizes them)."""
    with open_regular(manifest) as raw, io.TextIOWrapper(raw, encoding=bag.encoding) as text:
        for line in text:
            line = line.strip().lstrip("\ufeff")
            if line and not line.startswith("#"):
                parts = line.split(None, 1)
                if len(parts) == 2:
                    yield parts[1].lstrip("*")


def _check_manifest_paths(bag, prefix: str) -> None:
    """Refuse a payload manifest entry that leaves ``data/`` or a tag manifest entry that
    leaves the bag, before anything is read through it. (bagit compares the real path with
    the bag's as strings: ``data/../../BAG-other/x`` passes its check.)"""
    problems = []
    for folder, manifests in (("data", bag.manifest_files()), (None, bag.tagmanifest_files())):
        for manifest in manifests:
            name = os.path.basename(manifest)
            try:
                problems += [f"{name}: {entry} leads out of {'data/' if folder else 'the bag'}"
                             for entry in _manifest_lines(bag, manifest) if _leaves(entry, folder)]
            except (OSError, UnicodeDecodeError, LookupError) as exc:
                problems.append(f"{name}: cannot be read ({exc})")
    if problems:
        raise InvalidInput(f"{prefix}: {_listed(problems)}")


def _decode(name: str) -> str:
    """A file name from ``fetch.txt`` or a manifest, its escapes decoded (RFC 8493: only CR,
    LF and ``%`` are percent-encoded)."""
    return re.sub("%0[dD]|%0[aA]|%25",
                  lambda m: {"%0D": "\r", "%0A": "\n", "%25": "%"}[m.group().upper()], name)


def _check_fetch(bag, path: str, prefix: str) -> None:
    """A bag whose ``fetch.txt`` lists a file it does not hold is not complete (RFC 8493:
    not until every file is fetched, and each must be in every payload manifest): refused,
    naming those files. A filled-in bag (every listed file on disk and in the manifests) is
    complete."""
    location = os.path.join(path, "fetch.txt")
    if not os.path.lexists(location):
        return
    listed = {bagit.normalize_unicode(p) for p in bag.payload_entries()}
    absent = []
    with open_regular(location) as raw, io.TextIOWrapper(raw, encoding=bag.encoding) as text:
        try:
            for number, line in enumerate(text, 1):
                if not line.strip():
                    continue
                parts = line.strip().split(None, 2)
                if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
                    raise InvalidInput(f"{prefix}: fetch.txt: line {number} is not "
                                       "URL LENGTH FILENAME")
                name = _decode(parts[2])
                if _leaves(name, "data"):
                    raise InvalidInput(f"{prefix}: fetch.txt: {parts[2]} leads out of data/")
                normal = posixpath.normpath(name)
                if (bagit.normalize_unicode(normal) not in listed
                        or not os.path.lexists(os.path.join(path, normal))):
                    absent.append(parts[2])
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidInput(f"{prefix}: fetch.txt: cannot be read ({exc})") from None
    if absent:
        files = "file" if len(absent) == 1 else "files"
        raise InvalidInput(
            f"{prefix}: not complete: fetch.txt lists {len(absent)} {files} to fetch that "
            f"the bag does not hold: {_listed(absent)}")


def _check_entries(bag, path: str, payload: set[str],
                   problems: dict[str, list[str]]) -> dict[str, str]:
    """Every checksum of every manifest and tag manifest, computed here (bagit would open a
    FIFO and wait): each file opened only if it is regular and inside the bag. Returns each
    payload file's SHA-256 (computed too when no manifest has it)."""
    root = os.path.realpath(path)
    sha256: dict[str, str] = {}
    for relative, expected in sorted(bag.entries.items()):
        on_disk = bag.normalized_filesystem_names.get(bagit.normalize_unicode(relative), relative)
        location = os.path.join(path, on_disk)
        if not os.path.lexists(location):
            problems.setdefault(relative, []).append(_MISSING)
            continue
        if not _inside(os.path.realpath(location), root):
            problems.setdefault(relative, []).append(_OUT_OF_BAG)
            continue
        hashers = {algorithm: hashlib.new(algorithm) for algorithm in expected}
        if on_disk in payload and "sha256" not in hashers:
            hashers["sha256"] = hashlib.sha256()
        try:
            with open_regular(location) as stream:
                while block := stream.read(1024 * 1024):
                    for hasher in hashers.values():
                        hasher.update(block)
        except OSError as exc:
            problems.setdefault(relative, []).append(reason(exc))
            continue
        for algorithm, value in expected.items():
            if value.lower() != hashers[algorithm].hexdigest():
                problems.setdefault(relative, []).append(f"{algorithm} mismatch")
        if on_disk in payload:
            sha256[on_disk] = hashers["sha256"].hexdigest()
    return sha256


def _check_bagit_txt(path: str, prefix: str) -> None:
    with open_regular(os.path.join(path, "bagit.txt")) as stream:
        raw = stream.read(4096)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{prefix}: bagit.txt is not UTF-8") from None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line and not _BAGIT_TXT_LINE.fullmatch(line.lstrip("\ufeff")):
            raise InvalidInput(f"{prefix}: bagit.txt: malformed line {line!r}")


def _collect(exc: "bagit.BagValidationError", problems: dict[str, list[str]]) -> None:
    for detail in exc.details or []:
        if isinstance(detail, bagit.ChecksumMismatch):
            why = f"{detail.algorithm} mismatch"
        elif isinstance(detail, bagit.FileMissing):
            why = "in the manifest, missing on disk"
        elif isinstance(detail, bagit.UnexpectedFile):
            why = "on disk, not in the manifest"
        else:
            why = str(detail)
        problems.setdefault(str(getattr(detail, "path", "?")), []).append(why)
    if not exc.details:
        problems.setdefault("bag", []).append(exc.message)


def _oxum_problem(bag, size: int, payload: list[str]) -> str | None:
    oxum = bag.info.get("Payload-Oxum")
    if oxum is None:
        return None
    if isinstance(oxum, list):
        oxum = oxum[0]
    octets, _, files = oxum.partition(".")
    if not (octets.isdigit() and files.isdigit()):
        return f"malformed Payload-Oxum {oxum!r}"
    if (int(octets), int(files)) != (size, len(payload)):
        return (f"Payload-Oxum {oxum} does not match the payload "
                f"({size} bytes in {len(payload)} files)")
    return None


def _strip(message: str, path: str) -> str:
    return message.replace(path + os.sep, "").replace(path, ".")
