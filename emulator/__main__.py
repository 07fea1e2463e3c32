"""``python -m emulator emulator ...``: the emulator without the ``mlevents`` CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from emulator.cli import add_emulator_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the chosen command; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m emulator")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_emulator_parser(commands)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
