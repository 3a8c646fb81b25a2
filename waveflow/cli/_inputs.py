"""Shared plumbing of the file-processing subcommands: finding inputs, reading mel files, atomic
writes, loading the vocoder with one-line errors, and reporting per-file failures.

Inputs are given as any mix of files, folders (searched recursively for the wanted extensions) and
glob patterns (``'mels/*.npy'``, ``'data/**/*.wav'``), plus an optional file list in the format of
:mod:`waveflow.data.filelists` (one path per line, ``#`` comments, NVIDIA's ``path|text`` lines;
relative paths are resolved against the list's folder).

Mel files (``.npy``, ``.pt``, ``.npz``) are read without running code from them (``allow_pickle=
False``, ``torch.load(weights_only=True)``) and must hold ``(n_mels, frames)`` or
``(1, n_mels, frames)``, or with ``time_first`` ``(frames, n_mels)`` or ``(1, frames, n_mels)``.
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from waveflow.cli import CLIError
from waveflow.fileio import atomic_write, atomic_write_text  # noqa: F401  (re-exported for the commands)

if TYPE_CHECKING:
    from waveflow.infer.vocoder import Vocoder

MEL_EXTENSIONS = (".npy", ".pt", ".npz")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
_GLOB_CHARS = frozenset("*?[")
_NPZ_KEYS = ("mel", "feats")
_MAX_LISTED = 10


def notice(message: str) -> None:
    """An informational line on stderr (kept out of stdout, which may be parsed)."""
    print(f"note: {message}", file=sys.stderr)


# -- finding inputs -------------------------------------------------------------------------------
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
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in suffixes]
            if not files:
                raise CLIError(f"no {wanted} files match {item!r}")
            found.extend(files)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
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
class _ContentError(ValueError):
    """The file was read but holds the wrong kind of object."""


def _read_array(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise _ContentError(f"holds arrays {keys}; expected one array or one named 'mel' or 'feats'")
            return archive[key]
    if suffix == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            key = next((k for k in _NPZ_KEYS if k in obj), None)
            if key is None:
                raise _ContentError(
                    f"holds a dict with keys {sorted(map(str, obj))[:8]}; expected a tensor or key 'mel'"
                )
            obj = obj[key]
        if not isinstance(obj, torch.Tensor):
            raise _ContentError(f"holds a {type(obj).__name__}, expected a tensor")
        return obj.detach().to(torch.float32).numpy()
    raise _ContentError(f"has extension {path.suffix!r}; expected one of {', '.join(MEL_EXTENSIONS)}")


def load_mel_file(path: str | os.PathLike[str], n_mels: int, *, time_first: bool = False) -> np.ndarray:
    """Read one mel file -> float32 ``(n_mels, frames)``.

    Raises ``ValueError`` (message without the path; callers add it) for unreadable files, wrong
    layouts or mel counts, empty mels and NaN/Inf.
    """
    path = Path(path)
    try:
        array = np.asarray(_read_array(path))
    except _ContentError:
        raise
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(f"holds pickled Python objects{what}; refused without running them") from None
    except Exception as exc:
        # numpy and torch raise many types for truncated or foreign files (ValueError, OSError,
        # EOFError, RuntimeError, BadZipFile, ...): all mean "cannot be read".
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ValueError(f"not a readable {path.suffix} file ({type(exc).__name__}: {first_line})") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"holds {array.dtype} data, expected floating-point mel values")
    stored_shape = array.shape
    layout = "(frames, n_mels)" if time_first else "(n_mels, frames)"
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # (1, a, b) -> (a, b)
    if array.ndim != 2:
        raise ValueError(f"has shape {stored_shape}; expected {layout} or (1, ...) of it")
    if time_first:
        array = array.T  # (frames, n_mels) -> (n_mels, frames)
    if array.shape[0] != n_mels:
        hint = ""
        if array.shape[1] == n_mels:
            hint = " (drop --time-first)" if time_first else " (it looks time-first: pass --time-first)"
        raise ValueError(
            f"has shape {stored_shape}, read as {layout}: {array.shape[0]} mel bins but the checkpoint "
            f"expects n_mels={n_mels}{hint}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"has shape {stored_shape}: no frames")
    if not np.isfinite(array).all():
        num_bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"contains {num_bad} NaN/Inf value(s)")
    return np.ascontiguousarray(array, dtype=np.float32)


# -- writing ---------------------------------------------------------------------------------------------
def make_output_dir(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"output folder {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- checkpoints ------------------------------------------------------------------------------------------
def check_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or the shipped file of a registered name (``waveflow pretrained``).

    A file of that name in the working directory wins over the registry.
    """
    from waveflow import pretrained

    path = Path(path)
    if not path.exists() and pretrained.is_registered(str(path)):
        return pretrained.resolve(str(path))
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
    """:meth:`Vocoder.from_checkpoint` with one-line errors for missing or foreign files."""
    from waveflow.infer.vocoder import Vocoder

    path = check_checkpoint_path(path)
    try:
        return Vocoder.from_checkpoint(path, device=device, precision=precision, engine=engine)
    except (ValueError, FileNotFoundError):
        raise
    except (OSError, RuntimeError, EOFError) as exc:
        raise CLIError(f"cannot load checkpoint {path}: {type(exc).__name__}: {exc}") from None


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
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
