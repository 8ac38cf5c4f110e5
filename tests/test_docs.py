"""The docs stay honest: every command has help with an example, and docs/cli.md is exactly
what the commands' --help says. Regenerate it with: STET_UPDATE_DOCS=1 make test"""

import os
import pathlib

import click
import pytest
from click.testing import CliRunner

from stet.cli import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "cli.md"


def commands(group=cli, prefix=("stet",)):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from commands(command, prefix + (name,))


def reference() -> str:
    runner = CliRunner()
    parts = ["# Command reference\n",
             "Generated from each command's `--help` by `tests/test_docs.py` "
             "(`STET_UPDATE_DOCS=1 make test` writes it again).\n"]
    for path, _ in [(("stet",), cli), *commands()]:
        result = runner.invoke(cli, [*path[1:], "--help"], prog_name="stet", terminal_width=100)
        assert result.exit_code == 0, path
        parts.append(f"## {' '.join(path)}\n\n```\n{result.stdout.rstrip()}\n```\n")
    return "\n".join(parts)


@pytest.mark.parametrize("path, command", list(commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help(path, command):
    assert command.help and len(command.help.strip()) > 20, path
    if not isinstance(command, click.Group):
        assert "Example" in command.help, f"{' '.join(path)} has no example in its --help"


def test_cli_reference_is_current():
    text = reference()
    if os.environ.get("STET_UPDATE_DOCS"):
        REFERENCE.write_text(text, encoding="utf-8")
    assert REFERENCE.read_text(encoding="utf-8") == text, (
        "docs/cli.md is out of date: run STET_UPDATE_DOCS=1 make test")
