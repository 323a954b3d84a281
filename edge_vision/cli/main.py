"""The ``edge-vision`` command.

Each subcommand lives in its own module, listed in :data:`SUBCOMMANDS`. A subcommand module
provides ``register(subparsers)``, which adds its parser with ``subparsers.add_parser(...)``
and sets ``func`` to a handler ``(argparse.Namespace) -> int`` (the exit code) via
``parser.set_defaults(func=handler)``. Adding a subcommand is one line here. Subcommand
modules import rclpy (and anything heavy) inside their handlers only, so that
``edge-vision --help`` stays fast and works without ROS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge_vision import __version__

SUBCOMMANDS: tuple[str, ...] = (
    "edge_vision.cli.launch",
    "edge_vision.cli.models",
    "edge_vision.cli.events",
    "edge_vision.cli.prompt",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-vision", description="Edge video analytics on ROS 2."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
