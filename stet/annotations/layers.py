"""Layers: add, list, rename and merge, and following a layer's renames and merges.

A layer row never changes: a rename is a new row, and the chain's ``layer-rename`` and
``layer-merge`` events (:func:`moves`) say where a layer's annotations went; :func:`follow`
and :func:`find_layer` read them. Every function that writes takes the caller's
:class:`~stet.provenance.Chain` and appends its event there.
"""

from __future__ import annotations

import re
from typing import Any

from .. import timeutil
from ..errors import InvalidInput, NotFound
from ..provenance import Chain
from .schema import LAYER_MOVES

_COLOUR = re.compile(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?|[a-zA-Z]{1,32}")


def layers(conn) -> list[dict[str, Any]]:
    """The current layers (not those renamed or merged away), with how many active
    annotations each holds."""
    moved = moves(conn)
    rows = conn.execute(
        "SELECT l.id, l.name, l.description, l.colour, l.created_by, l.created, "
        "(SELECT count(*) FROM annotations a WHERE a.layer = l.id AND a.status = 'active') "
        "FROM layers l ORDER BY l.id"
    )
    keys = ("id", "name", "description", "colour", "created_by", "created", "annotations")
    return [dict(zip(keys, row)) for row in rows if row[0] not in moved]


def add_layer(conn, chain: Chain, name: str, *, by: str, description: str | None = None,
              colour: str | None = None) -> dict[str, Any]:
    """Create a layer (an event); an existing name is an error."""
    name = check_layer_name(name)
    colour = check_colour(colour)
    _check_new_name(conn, name)
    time = timeutil.iso(timeutil.now())
    cursor = conn.execute(
        "INSERT INTO layers (name, description, colour, created_by, created) VALUES (?, ?, ?, ?, ?)",
        (name, description, colour, by, time),
    )
    record = {"id": cursor.lastrowid, "name": name, "description": description,
              "colour": colour, "created_by": by, "created": time}
    chain.append(time=time, actor=by, action="layer-add", subject=f"layer:{name}",
                 details={k: v for k, v in record.items() if k not in ("created_by", "created")})
    return record


def check_colour(colour: str | None) -> str | None:
    if colour is not None and not _COLOUR.fullmatch(colour):
        raise InvalidInput(f"colour {colour!r}: give #rgb, #rrggbb or a CSS colour name")
    return colour


def check_layer_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a layer needs a name")
    if name != name.strip() or any(c in name for c in "\t\n\r"):
        raise InvalidInput(f"layer name {name!r}: no leading or trailing space, tab or newline")
    return name


def _check_new_name(conn, name: str) -> None:
    """A name for a new layer row: never one a layer has or had (names are never reused,
    so that every event naming a layer keeps meaning that layer)."""
    row = conn.execute("SELECT id FROM layers WHERE name = ?", (name,)).fetchone()
    if row is None:
        return
    moved = moves(conn)
    if row[0] in moved:
        now = layer_name(conn, follow(moved, row[0]))
        raise InvalidInput(f"layer {name!r} existed and is now {now!r}; a layer name is never "
                           "used twice")
    raise InvalidInput(f"layer {name!r} already exists")


def moves(conn) -> dict[int, tuple[int, int, str]]:
    """The layers renamed or merged away: ``{layer id: (into layer id, event seq, action)}``,
    read from the chain's ``layer-rename`` and ``layer-merge`` events (the record: a layer
    row never changes)."""
    return {row[0]: (row[1], row[2], row[3]) for row in conn.execute(
        "SELECT json_extract(details, '$.from'), json_extract(details, '$.into'), seq, action "
        f"FROM events WHERE action IN ({', '.join(repr(a) for a in LAYER_MOVES)}) "
        "AND json_extract(details, '$.from') IS NOT NULL ORDER BY seq")}


def follow(moved: dict[int, tuple[int, int, str]], layer: int) -> int:
    """Where a layer's annotations are now: the end of its renames and merges."""
    seen = {layer}
    while layer in moved:
        layer = moved[layer][0]
        if layer in seen:  # a cycle cannot be written; verify reports a forged one
            break
        seen.add(layer)
    return layer


def layer_name(conn, layer: int) -> str:
    row = conn.execute("SELECT name FROM layers WHERE id = ?", (layer,)).fetchone()
    return row[0] if row else str(layer)


def find_layer(conn, name: str, *, moved: dict | None = None) -> tuple[int, str | None] | None:
    """A layer by name, followed to where its annotations are now: ``(id, note)``, where
    ``note`` says it was renamed or merged (None if it was not); None if no layer ever had
    that name."""
    row = conn.execute("SELECT id FROM layers WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    moved = moves(conn) if moved is None else moved
    if row[0] not in moved:
        return row[0], None
    target = follow(moved, row[0])
    how = "renamed" if moved[row[0]][2] == "layer-rename" else "merged"
    return target, (f"layer {name!r} was {how} (event {moved[row[0]][1]}); its annotations "
                    f"are in {layer_name(conn, target)!r}")


def current_layer(conn, name: str) -> int:
    """A current layer (not renamed or merged away) by name; an error otherwise."""
    found = find_layer(conn, name)
    if found is None:
        raise NotFound(f"no layer {name!r}")
    if found[1] is not None:
        raise InvalidInput(found[1])
    return found[0]


def layer_id(conn, chain: Chain | None, name: str, *, by: str, create: bool = True,
             warn=None) -> int:
    """The id of a layer by name, created (with its event) on first use. A layer renamed or
    merged away gives the layer its annotations went to. ``warn`` (a callable) is told when
    a layer is created, or a name was followed to another layer."""
    found = find_layer(conn, name)
    if found is not None:
        if found[1] is not None and warn is not None:
            warn(f"{found[1]}; this annotation goes there too")
        return found[0]
    if not create or chain is None:
        raise NotFound(f"no layer {name!r}")
    if warn is not None:
        existing = [layer["name"] for layer in layers(conn)]
        listed = (": " + ", ".join(existing)) if existing else ""
        warn(f"new layer {name!r} ({len(existing)} layer{'' if len(existing) == 1 else 's'} "
             f"existed{listed})")
    return add_layer(conn, chain, name, by=by)["id"]


def rename_layer(conn, chain: Chain, old: str, new: str, *, by: str,
                 reason: str | None = None) -> dict[str, Any]:
    """Rename a layer: a new layer row named ``new`` (the old row, like every row, stays as
    it was), its annotations moved there in the current state, and a ``layer-rename``
    event that records both and is the new row's creation."""
    source = current_layer(conn, check_layer_name(old))
    new = check_layer_name(new)
    if new == old:
        raise InvalidInput(f"layer {old!r} already has that name")
    existing = find_layer(conn, new)
    if existing is not None and existing[1] is None:
        raise InvalidInput(f"layer {new!r} exists: merge {old!r} into it to put its "
                           "annotations there")
    _check_new_name(conn, new)
    description, colour = conn.execute(
        "SELECT description, colour FROM layers WHERE id = ?", (source,)).fetchone()
    time = timeutil.iso(timeutil.now())
    cursor = conn.execute(
        "INSERT INTO layers (name, description, colour, created_by, created) VALUES (?, ?, ?, ?, ?)",
        (new, description, colour, by, time))
    record = {"id": cursor.lastrowid, "name": new, "description": description,
              "colour": colour, "from": source, "from_name": old, "into": cursor.lastrowid,
              "reason": reason}
    moved = conn.execute("UPDATE annotations SET layer = ? WHERE layer = ?",
                         (record["id"], source)).rowcount
    chain.append(time=time, actor=by, action="layer-rename", subject=f"layer:{new}",
                 details=record)
    return {**record, "created_by": by, "created": time, "annotations": moved}


def merge_layers(conn, chain: Chain, source: str, into: str, *, by: str,
                 reason: str | None = None) -> dict[str, Any]:
    """Merge layer ``source`` into layer ``into``: every annotation of ``source`` is in
    ``into`` from now on (in the current state; its revisions keep the layer they were
    made in), ``source`` is closed, and a ``layer-merge`` event records it."""
    source_id = current_layer(conn, check_layer_name(source))
    into_id = current_layer(conn, check_layer_name(into))
    if source_id == into_id:
        raise InvalidInput(f"layer {source!r} cannot be merged into itself")
    time = timeutil.iso(timeutil.now())
    moved = conn.execute("UPDATE annotations SET layer = ? WHERE layer = ?",
                         (into_id, source_id)).rowcount
    record = {"from": source_id, "from_name": source, "into": into_id, "into_name": into,
              "reason": reason}
    chain.append(time=time, actor=by, action="layer-merge", subject=f"layer:{source}",
                 details=record)
    return {**record, "by": by, "time": time, "annotations": moved}
