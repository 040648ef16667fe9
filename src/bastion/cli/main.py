"""The `bastion` command line. Each command group lives in its own module with a `register(app)`."""

from __future__ import annotations

import sys

import typer

from . import (
    code_cmds,
    constitution_cmds,
    gateway_cmds,
    guard_cmds,
    preparedness_cmds,
    redteam_cmds,
    scale_cmds,
    train_cmds,
)

app = typer.Typer(
    name="bastion",
    help="Bastion: guard, red-team and gate an LLM before you ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _mod in (guard_cmds, train_cmds, redteam_cmds, preparedness_cmds, gateway_cmds, constitution_cmds,
             scale_cmds, code_cmds):
    _mod.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
