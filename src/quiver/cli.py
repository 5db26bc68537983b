"""The ``quiver`` command line: one subcommand per feature package.

Each feature package exposes ``register(subparsers)`` in its ``cli`` module; it adds its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code. Heavy imports
(torch, transformers) happen inside ``func``, never at registration, so ``quiver --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, in help order. A module that fails to import (a missing extra) is skipped with a note.
_COMMAND_MODULES = (
    "quiver.server.cli",
    "quiver.optimize.cli",
    "quiver.loadtest.cli",
    "quiver.plan.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quiver", description="Quiver: fast, measured inference serving.")
    parser.add_argument("--version", action="version", version=f"quiver {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module_name.rsplit(".", 1)[0]):
                continue  # that feature package does not exist (yet)
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


def _version() -> str:
    from quiver import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
