"""Accounts and tokens for the workbench: `stet user ...` and `stet token ...`, each change an
event; no password, hash or token is ever printed again, logged or published."""

from __future__ import annotations

import sys

import click

from ..accounts import ROLES
from .common import by_option, cli, db_option, echo_json, errors, json_option, open_archive, user
from .output import output_options, write


@cli.group("user")
def user_group() -> None:
    """Workbench accounts: add, list, change a role, disable.

    Roles, each including the one before: reader (sees everything, restricted
    included), annotator (writes annotations, revises and retracts their own),
    editor (revises and retracts anyone's, manages layers), archivist (restricts,
    corrects metadata, manages accounts). Each change is an event in the chain;
    accounts are never published.
    """


def _password() -> str:
    """From a prompt on a terminal (twice), else the first line of standard input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


def _said(result, as_json: bool, message: str) -> None:
    if as_json:
        echo_json(result)
    else:
        click.echo(message)


@user_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the account may do.")
@by_option
@json_option
@db_option
@errors
def user_add(name, role, by, as_json, db_path):
    """Add an account; its password from a prompt, or standard input.

    On a terminal the password is asked for twice (not shown); otherwise the
    first line of standard input is the password. Only its argon2 hash is kept.

    \b
    Example:
        stet user add ana --role annotator
        printf '%s\\n' "$PASSWORD" | stet user add omar --role editor
    """
    archive = open_archive(db_path, create=True)
    result = archive.add_user(name, role=role, password=_password(), by=user(by))
    _said(result, as_json, f"user {name}: added, role {role} (event {result['event']})")


@user_group.command("list")
@output_options
@db_option
@errors
def user_list(fmt, db_path):
    """List the accounts: name, role, whether disabled, when created.

    \b
    Example:
        stet user list
        stet user list --json
    """
    archive = open_archive(db_path, readonly=True)
    write(archive.users(), fmt, table=lambda r: {k: r[k] for k in
                                                  ("name", "role", "disabled", "created")})


@user_group.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@by_option
@json_option
@db_option
@errors
def user_role(name, role, by, as_json, db_path):
    """Change an account's role.

    \b
    Example:
        stet user role ana editor
    """
    result = open_archive(db_path).set_role(name, role, by=user(by))
    _said(result, as_json, f"user {name}: role {role} (event {result['event']})")


@user_group.command("disable")
@click.argument("name")
@by_option
@json_option
@db_option
@errors
def user_disable(name, by, as_json, db_path):
    """Disable an account: its password and its tokens stop working.

    \b
    Example:
        stet user disable ana
    """
    result = open_archive(db_path).disable_user(name, by=user(by))
    _said(result, as_json, f"user {name}: disabled (event {result['event']})")


@user_group.command("enable")
@click.argument("name")
@by_option
@json_option
@db_option
@errors
def user_enable(name, by, as_json, db_path):
    """Enable a disabled account again.

    \b
    Example:
        stet user enable ana
    """
    result = open_archive(db_path).enable_user(name, by=user(by))
    _said(result, as_json, f"user {name}: enabled (event {result['event']})")


@cli.group()
def token() -> None:
    """Bearer tokens for the workbench's API: create, list, revoke.

    A token is printed once, when it is created; only its SHA-256 is kept.
    Each creation and revocation is an event; tokens are never published.
    """


@token.command("create")
@click.argument("name")
@click.option("--expires", type=click.IntRange(min=1), metavar="DAYS",
              help="Days until the token stops working (default: never).")
@by_option
@json_option
@db_option
@errors
def token_create(name, expires, by, as_json, db_path):
    """Create a token for an account and print it, once.

    The token alone goes to standard output (with --json: the record and the
    token); what it is goes to standard error. It cannot be shown again.

    \b
    Example:
        stet token create ana --expires 30
    """
    result = open_archive(db_path).create_token(name, expires=expires, by=user(by))
    if as_json:
        echo_json(result)
        return
    until = f"expires {result['expires']}" if result["expires"] else "does not expire"
    click.echo(f"token {result['id']} for {name} ({until}; event {result['event']}): "
               "shown once, keep it", err=True)
    click.echo(result["token"])


@token.command("list")
@click.argument("name", required=False)
@output_options
@db_option
@errors
def token_list(name, fmt, db_path):
    """List the tokens (all, or one account's): never the token itself.

    \b
    Example:
        stet token list ana
    """
    archive = open_archive(db_path, readonly=True)
    write(archive.tokens(name), fmt, table=lambda r: {k: r[k] for k in
                                                      ("id", "account", "created", "expires",
                                                       "revoked")})


@token.command("revoke")
@click.argument("token_id", type=int)
@by_option
@json_option
@db_option
@errors
def token_revoke(token_id, by, as_json, db_path):
    """Revoke a token by its id (from stet token list): it stops working at once.

    \b
    Example:
        stet token revoke 3
    """
    result = open_archive(db_path).revoke_token(token_id, by=user(by))
    _said(result, as_json, f"token {token_id}: revoked (event {result['event']})")
