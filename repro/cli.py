"""Command line: ``python -m repro <command>`` (DESIGN.md §6).

Each module that owns a command registers it through ``add_cli(subparsers)``;
this file only assembles them and turns user errors into one clear line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ReproError

# modules that register sub-commands, in the order they appear in --help
COMMAND_MODULES = ("datacli", "study", "runcli", "evaluate", "bench", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro",
        description="Multi-task knowledge distillation for eye disease prediction: a reproducible study on ODIR-5K.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"repro.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"repro.{name}":
                continue
            raise
        mod.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
