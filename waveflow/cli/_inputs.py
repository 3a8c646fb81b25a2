"""Shared plumbing of the file-processing subcommands: finding inputs, reading mel files, atomic
writes, loading the vocoder with one-line errors, and reporting per-file failures.

Inputs are given as any mix of files, folders (searched recursively for the wanted extensions) and
glob patterns (``'mels/*.npy'``, ``'data/**/*.wav'``), plus an optional file list in the format of
:mod:`waveflow.data.filelists` (one path per line, ``#`` comments, NVIDIA's ``path|text`` lines;
relative paths are resolved against the list's folder). Folders and ``**`` are walked following
symbolic links to folders, each real folder once, so a link back up the tree (``d/loop -> d``)
cannot make the walk endless.

Mel files (``.npy``, ``.pt``, ``.npz``) are read by :mod:`waveflow.data.mel_files`, without running
code from them (``allow_pickle=False``, ``torch.load(weights_only=True)``) and must hold ``(n_mels, frames)`` or
``(1, n_mels, frames)``, or with ``time_first`` ``(frames, n_mels)`` or ``(1, frames, n_mels)``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from waveflow.cli import CLIError
from waveflow.errors import CheckpointError, OutputError
from waveflow.fileio import atomic_write, atomic_write_text  # noqa: F401  (re-exported for the commands)

if TYPE_CHECKING:
    from waveflow.infer.vocoder import Vocoder

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
_GLOB_CHARS = frozenset("*?[")
_MAX_LISTED = 10


_quiet = False  # set by `waveflow -q`: no notes, no progress bars


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) :func:`notice` and the progress bars of :func:`progress_disabled`."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def progress_disabled() -> bool | None:
    """tqdm's ``disable``: ``True`` under ``-q``, else ``None`` (a bar only on a terminal)."""
    return True if _quiet else None


def notice(message: str) -> None:
    """An informational line on stderr (kept out of stdout, which may be parsed); none under ``-q``."""
    if not _quiet:
        print(f"note: {message}", file=sys.stderr)


_clip_records: list[dict[str, int]] = []  # one per open record_clipping() block


def note_clipped(path: str | os.PathLike[str], num_clipped: int, num_samples: int) -> int:
    """After writing ``path``: a note saying how many of its ``num_samples`` samples were outside
    [-1, 1] and clipped (:func:`waveflow.audio.io.write_wav` returns the count); none when nothing
    was clipped or under ``-q``. The count also goes to every open :func:`record_clipping`.
    Returns ``num_clipped``.
    """
    if num_clipped:
        share = 100.0 * num_clipped / max(num_samples, 1)
        notice(f"{num_clipped} sample(s) ({share:.3g}%) clipped in {path}")
        for record in _clip_records:
            record[str(path)] = num_clipped
    return num_clipped


@contextlib.contextmanager
def record_clipping() -> Iterator[dict[str, int]]:
    """``{path: clipped samples}`` of the files :func:`note_clipped` reports inside the block
    (files without clipping are left out), for a command's JSON report."""
    record: dict[str, int] = {}
    _clip_records.append(record)
    try:
        yield record
    finally:
        _clip_records.remove(record)


# -- finding inputs -------------------------------------------------------------------------------
def _walk_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, following links to folders but entering each real folder once.

    Paths are given as reached from ``root`` (through links, not resolved). Entries that cannot be
    examined (dangling or self-referencing links, unreadable folders) are skipped.
    """
    visited: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in visited:
                continue  # reached again through a link: a loop, or a second way in
            visited.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():  # follows links
                    pending.append(folder / entry.name)
                elif entry.is_file():
                    yield folder / entry.name
            except OSError:  # e.g. ELOOP: a link to itself
                continue


def _component_matches(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether path components ``parts`` match glob components ``pattern`` (``**``: any folders).

    As :func:`glob.glob`: a wildcard does not match a leading dot, and ``**`` does not enter
    hidden folders.
    """
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for skip in range(len(parts) + 1):
            if _component_matches(rest, parts[skip:]):
                return True
            if skip < len(parts) and parts[skip].startswith("."):
                return False
        return False
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatch(parts[0], head) and _component_matches(rest, parts[1:])


def _glob(pattern: str) -> list[Path]:
    """The files matching ``pattern`` (with ``**``), without ever walking a symlink loop twice.

    :func:`glob.glob` follows links into loops on ``**`` (exponentially, with two loops); without
    ``**`` its depth is bounded by the pattern and it is used as is.
    """
    path = Path(pattern)
    parts = path.parts
    if "**" not in parts:
        return [Path(m) for m in glob.glob(pattern)]
    first_magic = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    base = Path(*parts[:first_magic]) if first_magic else Path()
    wanted = parts[first_magic:]
    return [p for p in _walk_files(base) if _component_matches(wanted, p.relative_to(base).parts)]


def _listing(paths: Sequence[object]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    return shown + (f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else "")


def collect_inputs(
    inputs: Iterable[str], filelist: str | os.PathLike[str] | None, extensions: Sequence[str], *, what: str
) -> list[Path]:
    """Expand files, folders, globs and a file list into a list of files (first occurrence kept).

    Files named explicitly (or in the list) are taken whatever their extension, so that a wrongly
    named file is reported rather than silently skipped; folders and globs contribute only files
    with one of ``extensions``. Missing inputs, empty folders and globs that match nothing raise
    an error naming them; so do two inputs with the same stem (they would write the same output).
    """
    found: list[Path] = []
    missing: list[str] = []
    suffixes = tuple(e.lower() for e in extensions)
    wanted = "/".join(suffixes)
    for item in inputs:
        path = Path(item).expanduser()
        if _GLOB_CHARS & set(item):
            matches = sorted(_glob(str(path)))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in suffixes]
            if not files:
                raise CLIError(f"no {wanted} files match {item!r}")
            found.extend(files)
        elif path.is_dir():
            files = sorted(p for p in _walk_files(path) if p.suffix.lower() in suffixes)
            if not files:
                raise CLIError(f"no {wanted} files in folder {path}")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            missing.append(item)
    if filelist is not None:
        from waveflow.data.filelists import read_filelist

        for path in read_filelist(filelist):
            (found if path.is_file() else missing).append(path)
    if missing:
        raise FileNotFoundError(f"{what} not found: {_listing(missing)}")
    if not found:
        raise CLIError(f"no {what} given (name files, folders or globs, or pass --filelist)")

    unique: list[Path] = []
    seen: set[Path] = set()
    by_stem: dict[str, Path] = {}
    for path in found:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if path.stem in by_stem:
            raise CLIError(
                f"{by_stem[path.stem]} and {path} have the same name stem {path.stem!r}; "
                f"their outputs would overwrite each other"
            )
        by_stem[path.stem] = path
        unique.append(path)
    return unique


# -- reading mel files ------------------------------------------------------------------------------
def __getattr__(name: str) -> Any:
    # The mel reader lives in waveflow.data.mel_files (training reads data.mel_dir with it); it is
    # imported on first use, so that commands which read no mel files do not import torch.
    if name in ("MEL_EXTENSIONS", "load_mel_file"):
        from waveflow.data import mel_files

        return getattr(mel_files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- writing ---------------------------------------------------------------------------------------------
# Outputs are checked before the work that produces them (loading the model, reading the inputs), so
# that an unusable location fails at once; any failure to write is an OutputError (exit code 4).
def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Fail with :class:`OutputError` unless folder ``path`` exists or could be created, writable.

    Nothing is created: the nearest existing folder on the way is probed with a temporary file
    (the only check that sees a read-only file system, or a full disk's quota, as root too).
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path.cwd())
    if not existing.is_dir():
        if existing == path:
            raise OutputError(f"output folder {path} exists and is a file")
        raise OutputError(f"cannot create output folder {path}: {existing} is a file")
    probe = existing / f".waveflow-write-test-{uuid.uuid4().hex}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        where = "" if existing == path else f" (in {existing})"
        raise OutputError(f"cannot write to {path}{where}: {_reason(exc)}") from None
    with contextlib.suppress(OSError):
        probe.unlink()
    return path


def make_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create folder ``path`` (and its parents) after :func:`check_output_dir`."""
    path = check_output_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {_reason(exc)}") from None
    return path


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Fail with :class:`OutputError` unless file ``path`` could be written (nothing is created)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a folder, not a file")
    check_output_dir(path.parent)
    return path


def make_output_file(path: str | os.PathLike[str]) -> Path:
    """:func:`check_output_file`, then create the folder that will hold ``path``."""
    path = check_output_file(path)
    make_output_dir(path.parent)
    return path


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Turn an ``OSError`` raised while writing ``path`` into one :class:`OutputError` naming it.

    A full disk or a read-only file system stops the whole command (exit code 4), rather than
    being reported file by file: every later file would fail the same way.
    """
    try:
        yield Path(path)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from exc


# -- checkpoints ------------------------------------------------------------------------------------------
def check_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or the shipped file of a registered name (``waveflow pretrained``).

    A file of that name in the working directory wins over the registry.
    """
    from waveflow import pretrained

    path = Path(path)
    if not path.exists() and pretrained.is_registered(str(path)):
        return pretrained.resolve(str(path), disable_progress=True if progress_disabled() else None)
    if not path.exists():
        hint = (
            f" (and not a registered name: {', '.join(pretrained.names())})"
            if os.sep not in str(path)
            else ""
        )
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    if path.is_dir():
        raise CLIError(f"checkpoint {path} is a folder; name the checkpoint file")
    return path


def load_vocoder(
    path: str | os.PathLike[str], *, device: str = "cpu", precision: str = "fp32", engine: str = "auto"
) -> Vocoder:
    """:meth:`Vocoder.from_checkpoint` with one-line errors for missing or foreign files.

    A file that is there but cannot be read as a checkpoint is a :class:`CheckpointError` (exit 3).
    """
    from waveflow.infer.vocoder import Vocoder

    path = check_checkpoint_path(path)
    try:
        return Vocoder.from_checkpoint(path, device=device, precision=precision, engine=engine)
    except (ValueError, FileNotFoundError):
        raise
    except (OSError, RuntimeError, EOFError) as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"cannot load checkpoint {path}: {type(exc).__name__}: {first_line}") from None


# -- per-file failures --------------------------------------------------------------------------------------
@dataclass
class Failures:
    """Files that could not be processed, with the reason; reported together at the end."""

    items: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str | BaseException) -> None:
        self.items.append((path, str(reason)))

    def __bool__(self) -> bool:
        return bool(self.items)

    def report(self, command: str, total: int) -> int:
        """Print the failures on stderr and return the exit code.

        0: nothing failed. 1: some files failed, the others were processed. 2: every file failed
        (the command produced nothing, like any other input error); a single file gives one line.
        """
        if not self.items:
            return 0
        if total == 1:
            path, reason = self.items[0]
            print(f"waveflow {command}: error: {path}: {reason}", file=sys.stderr)
            return 2
        print(f"waveflow {command}: {len(self.items)} of {total} file(s) failed:", file=sys.stderr)
        for path, reason in self.items:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 2 if len(self.items) == total else 1


# -- devices and noise ---------------------------------------------------------------------------------------
def add_device_arguments(parser: Any, *, precision: bool = True) -> None:
    """``--device`` (auto: CUDA when available) and, for synthesis, ``--precision``."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    if precision:
        parser.add_argument(
            "--precision",
            choices=("fp32", "fp16", "bf16"),
            default="fp32",
            help="arithmetic precision of the network (default fp32)",
        )
        parser.add_argument(
            "--engine",
            choices=("auto", "fast", "plain"),
            default="auto",
            help="synthesis code: auto (the fast CPU inverse on a CPU in fp32), fast (it, with the "
            "upsampler always folded), plain (the model's own inverse)",
        )


def resolve_device(device: str) -> str:
    """``--device`` checked (:func:`waveflow.devices.parse_device`; ``auto``: CUDA when available)."""
    from waveflow.devices import parse_device

    return str(parse_device(device, "--device"))


def file_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one file, derived from the run's ``seed`` and the file's name.

    Each file gets its own noise, independent of which other files are in the run and of how they
    are batched, so the same seed always gives the same audio for the same file.
    """
    import hashlib

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def json_safe(value: Any) -> Any:
    """Replace NaN/Inf floats (not valid JSON) by ``None``, recursively."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def mel_of(vocoder: Vocoder, audio: np.ndarray) -> np.ndarray:
    """The checkpoint's mel of ``audio`` (T,) at the vocoder's rate -> float32 ``(n_mels, frames)``."""
    import torch

    mel = vocoder.mel(audio, vocoder.sample_rate)
    if isinstance(mel, torch.Tensor):
        mel = mel.detach().to("cpu", torch.float32).numpy()
    return np.asarray(mel, dtype=np.float32).reshape(vocoder.n_mels, -1)  # (1, n_mels, F) -> (n_mels, F)
