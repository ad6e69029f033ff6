"""The ``interp`` command line (also ``python -m interp``).

Every subcommand lives in its own module ``interp/cli/_<name>.py`` with a ``register(sub)``
function that adds its parser and sets ``func``. ``main(argv)`` is callable in-process, which
is how the tests drive it. Bad input (an :class:`~interp.errors.InterpError`) prints
``error: ...`` with its fix and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import InterpError

__all__ = ["main", "build_parser"]

COMMANDS = ("models", "record", "gradients", "patch", "probe", "sinks", "figures", "report", "toy",
            "pause_train", "controls")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Where and when does a transformer compute for the future? "
        "Lookahead, pause tokens and registers, measured.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"interp.cli._{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    import contextlib

    from ..core.io import folder_lock
    from ._common import check_args

    try:
        check_args(args)
        # one writer per result folder: a second command writing the same --out is refused
        # (under torchrun, rank 0 holds it for every process of the run)
        out = getattr(args, "out", None) if os.environ.get("RANK", "0") == "0" else None
        with folder_lock(out) if out is not None else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except InterpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
