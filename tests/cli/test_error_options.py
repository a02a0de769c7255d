"""An error or help text never names an option that does not exist: every `--option` written anywhere in the
package is an option of some command (the bad-input catalogue checks each refusal against its own command)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from hashidx.cli import main

PACKAGE = Path(__file__).resolve().parents[2] / "hashidx"
OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
# Options of other programs the package's strings name: `ray start --head` in a message, and Ray's own --address,
# which the Ray engine rewrites to --ray-address in the errors it relays.
OTHER_PROGRAMS = {"--head", "--address"}


def all_options(group: click.Group = main) -> set[str]:
    names = {"--help"} | {opt for p in group.params for opt in (*p.opts, *p.secondary_opts)}
    for command in group.commands.values():
        if isinstance(command, click.Group):
            names |= all_options(command)
        names |= {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    return names


def strings_in(path: Path) -> list[tuple[int, str]]:
    """Every string constant (f-string pieces included) of a module, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_every_option_the_package_names_exists():
    known = all_options() | OTHER_PROGRAMS
    unknown = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: --{name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in strings_in(path)
        for name in OPTION.findall(text)
        if f"--{name}" not in known
    ]
    assert not unknown, unknown


def test_the_check_sees_a_made_up_option():
    assert "--address" not in all_options() and OPTION.findall("use the `--address` flag") == ["address"]
