"""The ``waveflow`` command: ``waveflow <subcommand> ...``.

Each subcommand lives in its own module under ``waveflow.cli`` and provides
``add_parser(subparsers)``, which registers an ``argparse`` parser whose ``func`` default is the
function to run. The CLI only parses arguments, builds configs and calls the layers below; it
holds no model logic.

Every expected failure (bad input, bad checkpoint, unwritable output, out of memory, a signal) is
reported as one line on stderr, ``waveflow <command>: error: <file>: <cause>``, and ends with the
exit code of its class (:mod:`waveflow.errors`); ``--debug`` (or ``-v``) adds the traceback.
Anything else is a bug and keeps its traceback. ``-q`` hides progress bars and notes. The global
options may come before or after the subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from waveflow.errors import EXIT_INPUT, EXIT_SIGTERM, InputError, WaveflowError, exit_code_for

# Order = order in `waveflow --help`.
SUBCOMMANDS: tuple[str, ...] = (
    "waveflow.cli.train",
    "waveflow.cli.convert",
    "waveflow.cli.export_cmd",
    "waveflow.cli.synthesize",
    "waveflow.cli.resynthesize",
    "waveflow.cli.extract_mels",
    "waveflow.cli.inspect_cmd",
    "waveflow.cli.score",
    "waveflow.cli.latent",
    "waveflow.cli.evaluate",
    "waveflow.cli.plot_log",
    "waveflow.cli.prepare",
    "waveflow.cli.prepare_corpus",
    "waveflow.cli.demo",
    "waveflow.cli.pretrained_cmd",
    "waveflow.cli.download_cmd",
)


class CLIError(InputError):
    """An error caused by the user's input; printed without a traceback (exit code 2)."""


class Terminated(BaseException):
    """Raised by the CLI's SIGTERM handler (a ``BaseException``, like ``KeyboardInterrupt``)."""


# The global options: flag -> attribute of the parsed arguments.
_GLOBAL_FLAGS = {"--debug": "debug", "-v": "debug", "--verbose": "debug", "-q": "quiet", "--quiet": "quiet"}


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--debug",
        "-v",
        "--verbose",
        dest="debug",
        action="store_true",
        default=default,
        help="show the full traceback of an error too",
    )
    parser.add_argument(
        "-q", "--quiet", dest="quiet", action="store_true", default=default, help="no progress bars or notes"
    )


def build_parser() -> argparse.ArgumentParser:
    from waveflow import __version__

    parser = argparse.ArgumentParser(
        prog="waveflow",
        description="WaveGlow-style flow vocoder: train, synthesize, convert and evaluate.",
        epilog="Exit codes: 0 done, 1 some files of a batch failed, 2 bad input, 3 bad checkpoint, "
        "4 output not writable, 5 out of memory, 130/143 interrupted/terminated.",
    )
    parser.add_argument("--version", action="version", version=f"waveflow {__version__}")
    _add_global_options(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    for subparser in sub.choices.values():
        # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
        _add_global_options(subparser, argparse.SUPPRESS)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, letting options and positionals of a subcommand come in any order.

    Plain ``parse_args`` cannot hand ``synthesize CKPT -o OUT a.npy b.npy`` or
    ``train --config X a=1 --run-dir D b=2`` to a subcommand with a variable number of
    positionals; the subcommand's own ``parse_intermixed_args`` can.
    """
    argv = list(argv)
    given: set[str] = set()
    while argv and argv[0] in _GLOBAL_FLAGS:  # global options before the subcommand
        given.add(_GLOBAL_FLAGS[argv.pop(0)])
    sub_actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not argv or argv[0].startswith("-") or argv[0] not in sub_actions[0].choices:
        args = parser.parse_args(argv)  # --help, --version, or an unknown command: argparse explains
    else:
        name = argv[0]
        subparser = sub_actions[0].choices[name]
        try:
            args = subparser.parse_intermixed_args(argv[1:])
        except TypeError:  # a subcommand using features intermixed parsing does not support
            args = subparser.parse_args(argv[1:])
        args.command = name
    for flag in ("debug", "quiet"):
        setattr(args, flag, flag in given or bool(getattr(args, flag, False)))
    return args


def describe(exc: BaseException) -> str:
    """One line saying what went wrong: the file and the cause."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(exc, MemoryError):
        return "out of memory" + (f" ({exc})" if str(exc) else "")
    if isinstance(exc, OSError) and not isinstance(exc, WaveflowError) and exc.strerror:
        # "[Errno 30] Read-only file system: 'x'" -> "x: Read-only file system"
        files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        text = f"{' -> '.join(files)}: {exc.strerror}" if files else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _exit_code(exc: BaseException) -> int | None:
    """:func:`waveflow.errors.exit_code_for`, plus the CLI's own cases."""
    if isinstance(exc, Terminated):
        return EXIT_SIGTERM
    if (
        isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError))
        and not isinstance(exc, WaveflowError)
        and exc.errno is None
    ):
        return EXIT_INPUT  # raised with a message only ("checkpoint not found: x"): a missing input
    return exit_code_for(exc)


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _set_sigterm_handler(handler: object) -> list[object]:
    """Install ``handler`` for SIGTERM; ``[previous handler]``, or ``[]`` off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return []  # only the main thread may install handlers
    return [signal.signal(signal.SIGTERM, handler)]


def main(argv: Sequence[str] | None = None) -> int:
    from waveflow.cli import _inputs

    parser = build_parser()
    args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
    _inputs.set_quiet(args.quiet)
    # SIGTERM unwinds like Ctrl-C (temporary files are removed) and ends with one line and 143.
    # Training installs its own handler for the length of the run, which stops after a checkpoint.
    previous = _set_sigterm_handler(_on_sigterm)
    try:
        result = args.func(args)
    except BaseException as exc:
        code = _exit_code(exc)  # waveflow.errors.exit_code_for, and SIGTERM
        if code is None:
            raise  # a bug: the traceback is the report
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        kind = "" if isinstance(exc, (KeyboardInterrupt, Terminated)) else "error: "
        print(f"waveflow {args.command}: {kind}{describe(exc)}", file=sys.stderr)
        return code
    finally:
        for handler in previous:
            # None: the previous handler was not set from Python; the default is the best guess.
            signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)
        _inputs.set_quiet(False)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
