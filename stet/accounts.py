"""Accounts and bearer tokens for the workbench: who may read and write the live archive.

An account is a row of ``accounts`` (its name, its password's argon2 hash, when and by whom
it was made) and a ``user-add`` event; a token is a row of ``tokens`` (only the SHA-256 of
the token, never the token) and a ``token-create`` event. Both tables are append-only. What
changes later is an event only: ``user-role``, ``user-disable`` and ``user-enable`` record
the account's whole state after them (``role``, ``disabled``), and the current state is that
of the latest (the ``account_state`` view); ``token-revoke`` revokes a token (the
``token_state`` view). No event holds a password, a hash or a token, and none of it is ever
published (:mod:`stet.publish` copies no account row and no account event).

Roles are ordered, each including the one before: :data:`ROLES`, :func:`allows`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any


from . import timeutil
from .errors import InvalidInput, NotFound, arg
from .provenance import Chain

#: The roles, each including every one before it.
ROLES = ("reader", "annotator", "editor", "archivist")
MIN_PASSWORD = 8

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SELECT_ACCOUNT = ("SELECT a.id, a.name, s.role, s.disabled, a.created, a.created_by "
                   "FROM accounts a JOIN account_state s ON s.account = a.id")
_SELECT_TOKEN = ("SELECT t.id, a.name, t.created, t.created_by, t.expires, s.revoked "
                 "FROM tokens t JOIN accounts a ON a.id = t.account "
                 "JOIN token_state s ON s.token = t.id")


def allows(role: str | None, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (an unknown or missing role may nothing)."""
    if needed not in ROLES:
        raise ValueError(f"unknown role {needed!r}: one of {', '.join(ROLES)}")
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@lru_cache(maxsize=1)
def _hasher():
    """argon2id with the library's current parameters. argon2 loads here, on first use: only
    the account commands hash or check a password, and every command starts faster."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when no account has the name: failing takes as long."""
    return _hasher().hash(secrets.token_urlsafe(16))


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def _name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a user name: 1 to 64 letters, digits, '.', '_', "
                           "'@' or '-', starting with a letter or digit")
    return name


def _account(row) -> dict[str, Any]:
    keys = ("id", "name", "role", "disabled", "created", "created_by")
    record = dict(zip(keys, row))
    record["disabled"] = bool(record["disabled"])
    return record


def get(conn, name: str) -> dict[str, Any]:
    """One account's current state (role and disabled from the chain)."""
    row = conn.execute(f"{_SELECT_ACCOUNT} WHERE a.name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no user {name!r}")
    return _account(row)


def users(conn) -> list[dict[str, Any]]:
    """Every account, by name: never a hash."""
    return [_account(row) for row in conn.execute(f"{_SELECT_ACCOUNT} ORDER BY a.name")]


def _state_event(chain: Chain, action: str, account: dict[str, Any], *, by: str,
                 time: str | None = None) -> dict[str, Any]:
    return chain.append(
        time=time, actor=by, action=action, subject=f"user:{account['name']}",
        details={"account": account["id"], "name": account["name"], "role": account["role"],
                 "disabled": account["disabled"]})


def add(conn, chain: Chain, name: str, *, role: str, password: str, by: str) -> dict[str, Any]:
    """A new account with ``role``; the password is kept only as its argon2 hash."""
    name, role = _name(name), _role(role)
    if password is None or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
        raise InvalidInput(f"user {name!r} exists already")
    created = timeutil.iso(timeutil.now())
    cursor = conn.execute(
        "INSERT INTO accounts (name, password_hash, created, created_by) VALUES (?, ?, ?, ?)",
        (name, _hasher().hash(password), created, by))
    account = {"id": cursor.lastrowid, "name": name, "role": role, "disabled": False,
               "created": created, "created_by": by}
    event = _state_event(chain, "user-add", account, by=by, time=created)
    return {**account, "event": event["seq"]}


def set_role(conn, chain: Chain, name: str, role: str, *, by: str) -> dict[str, Any]:
    account, role = get(conn, name), _role(role)
    if account["role"] == role:
        raise InvalidInput(f"user {name!r} has role {role} already")
    account["role"] = role
    return {**account, "event": _state_event(chain, "user-role", account, by=by)["seq"]}


def set_disabled(conn, chain: Chain, name: str, disabled: bool, *, by: str) -> dict[str, Any]:
    """Disable an account (its password and tokens stop working) or enable it again."""
    account = get(conn, name)
    if account["disabled"] == disabled:
        raise InvalidInput(f"user {name!r} is {'disabled' if disabled else 'enabled'} already")
    account["disabled"] = disabled
    action = "user-disable" if disabled else "user-enable"
    return {**account, "event": _state_event(chain, action, account, by=by)["seq"]}


def check_password(conn, name: str, password: str) -> dict[str, Any] | None:
    """The account if ``password`` is its password and it is not disabled, else None. An
    unknown name is checked against a dummy hash, so it fails in the same time."""
    row = conn.execute("SELECT password_hash FROM accounts WHERE name = ?", (name,)).fetchone()
    if not isinstance(password, str):
        password = ""
    from argon2.exceptions import InvalidHashError, VerificationError  # loaded by _hasher()

    try:
        _hasher().verify(row[0] if row else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    account = get(conn, name)
    return None if account["disabled"] else account


# -- tokens ---------------------------------------------------------------------------------


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token(row) -> dict[str, Any]:
    record = dict(zip(("id", "account", "created", "created_by", "expires", "revoked"), row))
    record["revoked"] = bool(record["revoked"])
    return record


def create_token(conn, chain: Chain, name: str, *, by: str,
                 expires: datetime | None = None) -> dict[str, Any]:
    """A new bearer token for the account, returned once (``token``); only its SHA-256 is
    kept. ``expires``: the instant it stops working (None: never)."""
    account = get(conn, name)
    if account["disabled"]:
        raise InvalidInput(f"user {name!r} is disabled: enable it first")
    token = secrets.token_urlsafe(32)
    created = timeutil.iso(timeutil.now())
    until = timeutil.iso(expires) if expires is not None else None
    cursor = conn.execute(
        "INSERT INTO tokens (account, sha256, created, created_by, expires) VALUES (?, ?, ?, ?, ?)",
        (account["id"], _sha256(token), created, by, until))
    token_id = cursor.lastrowid
    event = chain.append(time=created, actor=by, action="token-create", subject=f"token:{token_id}",
                         details={"id": token_id, "account": account["id"], "name": name,
                                  "expires": until})
    return {"id": token_id, "account": name, "created": created, "created_by": by,
            "expires": until, "event": event["seq"], "token": token}


def tokens(conn, name: str | None = None) -> list[dict[str, Any]]:
    """The tokens (all, or one account's), by id: never the token nor its hash."""
    if name is None:
        return [_token(row) for row in conn.execute(f"{_SELECT_TOKEN} ORDER BY t.id")]
    get(conn, name)
    return [_token(row) for row in conn.execute(f"{_SELECT_TOKEN} WHERE a.name = ? ORDER BY t.id",
                                                (name,))]


def revoke_token(conn, chain: Chain, token_id: int, *, by: str) -> dict[str, Any]:
    row = conn.execute(f"{_SELECT_TOKEN} WHERE t.id = ?", (token_id,)).fetchone()
    if row is None:
        raise NotFound(f"no token {token_id}")
    record = _token(row)
    if record["revoked"]:
        raise InvalidInput(f"token {token_id} is revoked already")
    account_id = conn.execute("SELECT account FROM tokens WHERE id = ?", (token_id,)).fetchone()[0]
    event = chain.append(actor=by, action="token-revoke", subject=f"token:{token_id}",
                         details={"id": token_id, "account": account_id, "name": record["account"]})
    return {**record, "revoked": True, "event": event["seq"]}


def authenticate_token(conn, token: str) -> dict[str, Any] | None:
    """The account a bearer token speaks for, or None: an unknown, revoked or expired token,
    or a disabled account."""
    if not isinstance(token, str) or not token:
        return None
    row = conn.execute("SELECT a.name, t.expires, s.revoked FROM tokens t "
                       "JOIN accounts a ON a.id = t.account JOIN token_state s ON s.token = t.id "
                       "WHERE t.sha256 = ?", (_sha256(token),)).fetchone()
    if row is None or row[2]:
        return None
    name, expires = row[0], row[1]
    if expires is not None and expires <= timeutil.iso(timeutil.now()):
        return None
    account = get(conn, name)
    return None if account["disabled"] else account


def days(value: float | None):
    """The instant ``value`` days from now (None: None); a positive number of days only."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInput(f"{arg('expires')} is a positive number of days")
    try:
        return timeutil.now() + timedelta(days=value)
    except OverflowError:
        raise InvalidInput(f"{arg('expires')}: {value} days is out of range") from None
