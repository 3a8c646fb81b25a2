"""The ``waveflow`` command: ``waveflow <subcommand> ...``.

Each subcommand lives in its own module under ``waveflow.cli`` and provides
``add_parser(subparsers)``, which registers an ``argparse`` parser whose ``func`` default is the
function to run. The CLI only parses arguments, builds configs and calls the layers below; it
holds no model logic. Expected user errors (bad files, shapes, configs) are reported as one line
on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order = order in `waveflow --help`.
SUBCOMMANDS: tuple[str, ...] = ("waveflow.cli.convert",)


class CLIError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from waveflow import __version__

    parser = argparse.ArgumentParser(
        prog="waveflow",
        description="WaveGlow-style flow vocoder: train, synthesize, convert and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"waveflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (CLIError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"waveflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"waveflow {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
