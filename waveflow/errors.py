"""The exceptions waveflow raises for expected failures, and the exit code of each class.

Every expected failure belongs to one class; the command line prints one line naming the file and
the cause and exits with the class's code (tracebacks only with ``--debug``). The classes subclass
the built-in exception a caller would already catch (``ValueError``, ``OSError``), so code written
against earlier versions keeps working.

=====  =======================================================================================
code   meaning
=====  =======================================================================================
0      success
1      a batch command finished, but some of its items failed (each was named on stderr)
2      bad input: a missing or unreadable input file, wrong shapes, values or configuration
3      bad checkpoint: unreadable, unsafe (a pickle asking for code), inconsistent or non-finite
4      I/O: an output cannot be written (permissions, read-only file system, disk full, a path
       below a file)
5      out of memory
130    interrupted (SIGINT, Ctrl-C); 143: terminated (SIGTERM) — ``128 + signal``, as shells do
=====  =======================================================================================
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_INPUT = 2
EXIT_CHECKPOINT = 3
EXIT_IO = 4
EXIT_MEMORY = 5
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class WaveflowError(Exception):
    """Base class of waveflow's expected failures."""

    exit_code = EXIT_INPUT


class InputError(WaveflowError, ValueError):
    """An input (file, array, option or config) that waveflow cannot use."""

    exit_code = EXIT_INPUT


class CheckpointError(WaveflowError, ValueError):
    """A checkpoint that cannot be loaded: corrupt, unsafe, inconsistent with its config, non-finite."""

    exit_code = EXIT_CHECKPOINT


class OutputError(WaveflowError, OSError):
    """An output that cannot be written."""

    exit_code = EXIT_IO


# errno values that mean "the input does not exist / is the wrong kind of path": bad input.
_INPUT_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}


def exit_code_for(exc: BaseException) -> int | None:
    """The documented exit code of an expected failure, or ``None`` for a bug (show the traceback)."""
    if isinstance(exc, WaveflowError):
        return exc.exit_code
    if isinstance(exc, MemoryError):
        return EXIT_MEMORY
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    if isinstance(exc, OSError):
        return EXIT_INPUT if exc.errno in _INPUT_ERRNOS else EXIT_IO
    if isinstance(exc, ValueError):
        return EXIT_INPUT
    return None
