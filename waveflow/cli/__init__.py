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
SUBCOMMANDS: tuple[str, ...] = (
    "waveflow.cli.train",
    "waveflow.cli.convert",
    "waveflow.cli.synthesize",
    "waveflow.cli.resynthesize",
    "waveflow.cli.extract_mels",
    "waveflow.cli.inspect_cmd",
    "waveflow.cli.score",
    "waveflow.cli.latent",
    "waveflow.cli.evaluate",
    "waveflow.cli.prepare",
    "waveflow.cli.prepare_corpus",
    "waveflow.cli.demo",
    "waveflow.cli.pretrained_cmd",
)


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


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, letting options and positionals of a subcommand come in any order.

    Plain ``parse_args`` cannot hand ``synthesize CKPT -o OUT a.npy b.npy`` or
    ``train --config X a=1 --run-dir D b=2`` to a subcommand with a variable number of
    positionals; the subcommand's own ``parse_intermixed_args`` can.
    """
    sub_actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not argv or argv[0].startswith("-") or argv[0] not in sub_actions[0].choices:
        return parser.parse_args(argv)  # --help, --version, or an unknown command: argparse explains
    name = argv[0]
    subparser = sub_actions[0].choices[name]
    try:
        args = subparser.parse_intermixed_args(argv[1:])
    except TypeError:  # a subcommand using features intermixed parsing does not support
        args = subparser.parse_args(argv[1:])
    args.command = name
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
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
