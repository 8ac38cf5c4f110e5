"""The files an import reads: finding them, and the annotations in each, in batches.

A file holds W3C annotations as JSON Lines (one per line) or as one JSON-LD document (an
annotation, a list of them, an ``AnnotationPage`` or an ``AnnotationCollection`` with its
pages embedded). Nothing here touches the archive: the worker process
(:mod:`stet.annotations.worker`) runs this too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import orjson

from ..errors import InvalidInput, StetError

#: File names that ``stet import DIR`` reads.
SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonld")


T = TypeVar("T")


def files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files to import: each FILE, and every .jsonl/.json/.jsonld under each DIR."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
            if not inside:
                raise InvalidInput(f"{path}: no {', '.join(SUFFIXES)} files to import")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or directory")
    return found


def read(path: Path, sha256: list[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, annotation)`` for each annotation in a W3C file, JSON Lines or JSON-LD.

    ``where`` names the place for messages (``line 3``, ``item 3``). With ``sha256`` (a
    list), the file's SHA-256 (hex) is appended to it once the whole file has been read,
    hashed as it was read rather than read again.
    """
    digest = hashlib.sha256() if sha256 is not None else None
    with open(path, "rb") as stream:
        number, head = 0, None
        for index, first in enumerate(stream, 1):
            if digest is not None:
                digest.update(first)
            number = index  # the line where the content starts, used below
            if first.strip():
                try:
                    head = orjson.loads(first)
                except orjson.JSONDecodeError:
                    pass
                break
        if isinstance(head, dict) and not _is_container(head):  # JSON Lines
            yield f"line {number}", head
            for at, line in enumerate(stream, number + 1):
                if digest is not None:
                    digest.update(line)
                if not line.isspace():  # (as line.strip(), without copying the line)
                    yield f"line {at}", _loads(line, f"line {at}")
            if sha256 is not None:
                sha256.append(digest.hexdigest())
            return
        stream.seek(0)
        whole = stream.read()
    if sha256 is not None:
        sha256.append(hashlib.sha256(whole).hexdigest())
    document = _loads(whole, "")
    del whole  # (the items are what is kept)
    yield from _items(document)


def _loads(text: bytes, where: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        problem = "not UTF-8 text" if "UTF-8" in str(exc) else f"not JSON ({exc})"
        raise InvalidInput(f"{where + ': ' if where else ''}{problem}") from None
    if where and not isinstance(value, dict):
        raise InvalidInput(f"{where}: not a JSON object")
    return value


def _is_container(value: dict[str, Any]) -> bool:
    kinds = value.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return "AnnotationCollection" in kinds or "AnnotationPage" in kinds


def _items(document: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(document, list):
        pages = [{"items": document}]
    elif isinstance(document, dict) and _is_container(document):
        kinds = document.get("type")
        if "AnnotationPage" in (kinds if isinstance(kinds, list) else [kinds]):
            pages = [document]
        else:
            pages = []
            page = document.get("first")
            while page is not None:
                if not isinstance(page, dict):
                    raise InvalidInput("the collection's pages must be embedded, not links")
                pages.append(page)
                page = page.get("next")
    elif isinstance(document, dict):
        pages = [{"items": [document]}]
    else:
        raise InvalidInput("not a W3C annotation, collection or page")
    index = 0
    for page in pages:
        items = page.get("items", [])
        if not isinstance(items, list):
            raise InvalidInput("a page's items must be a list")
        for item in items:
            index += 1
            if not isinstance(item, dict):
                raise InvalidInput(f"item {index}: not a JSON object")
            yield f"item {index}", item


def parsed_batches(items: Iterable[tuple[str, dict[str, Any]]],
                   parse: Callable[[dict[str, Any]], T],
                   size: int) -> Iterator[list[tuple[str, T]]]:
    """``parse`` each ``(where, item)``, in lists of ``size``; the first malformed item raises
    :class:`InvalidInput` naming where it is."""
    batch: list[tuple[str, T]] = []
    for where, item in items:
        try:
            batch.append((where, parse(item)))
        except StetError as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
