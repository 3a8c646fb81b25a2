"""Reading mel spectrogram files: ``.npy``, ``.pt`` and ``.npz``, without running code from them.

The one reader of mel files: ``waveflow synthesize`` uses it for its inputs and training uses it
for teacher-forced mels (``data.mel_dir``, :mod:`waveflow.data.mel_dir`). Files are read with
``np.load(allow_pickle=False)`` and ``torch.load(weights_only=True)`` and must hold
``(n_mels, frames)`` or ``(1, n_mels, frames)``, or with ``time_first`` ``(frames, n_mels)`` or
``(1, frames, n_mels)``; ``.npz`` and ``.pt`` dicts may name the array ``mel`` or ``feats``.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from waveflow.errors import InputError

MEL_EXTENSIONS = (".npy", ".pt", ".npz")
_NPZ_KEYS = ("mel", "feats")


class _ContentError(ValueError):
    """The file was read but holds the wrong kind of object."""


def _check_npy_size(handle: Any, size: int) -> None:
    """Refuse a ``.npy`` stream (``size`` bytes in all) whose header declares more data than follows.

    numpy allocates the declared shape before reading, so a 100-byte file declaring
    ``(80, 10**12)`` would ask for terabytes; this reads only the header.
    """
    from numpy.lib import format as npy_format

    version = npy_format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(handle)
    else:
        return  # version 3 (UTF-8 field names): numpy's own checks apply
    if dtype.hasobject or any(d < 0 for d in shape):
        return  # refused by np.load itself (no pickles; negative dimensions)
    declared = math.prod(shape) * dtype.itemsize
    available = size - handle.tell()
    if declared > available:
        raise _ContentError(
            f"is truncated or corrupt: its header declares shape {shape} of {dtype} ({declared} bytes) "
            f"but {available} bytes follow it"
        )


def _read_array(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with open(path, "rb") as handle:
            _check_npy_size(handle, os.fstat(handle.fileno()).st_size)
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise _ContentError(f"holds arrays {keys}; expected one array or one named 'mel' or 'feats'")
            member = next(n for n in archive.zip.namelist() if n in (key, f"{key}.npy"))
            with archive.zip.open(member) as handle:
                _check_npy_size(handle, archive.zip.getinfo(member).file_size)
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
        # What the tensor is, before any cast: a cast would drop imaginary parts or turn bools into 0/1.
        if obj.is_nested:
            raise _ContentError("holds a nested tensor, expected a dense (n_mels, frames) tensor")
        if obj.layout != torch.strided:
            raise _ContentError(f"holds a sparse tensor ({obj.layout}), expected a dense one")
        if obj.is_quantized:
            raise _ContentError(f"holds a quantized tensor ({obj.dtype}), expected floating-point mel values")
        if obj.dtype.is_complex or obj.dtype == torch.bool:
            raise _ContentError(
                f"holds {str(obj.dtype).removeprefix('torch.')} data, expected floating-point mel values"
            )
        if obj.device.type != "cpu":
            raise _ContentError(f"holds a tensor on device {obj.device.type!r} without data")
        return obj.detach().to(torch.float32).numpy()
    raise _ContentError(f"has extension {path.suffix!r}; expected one of {', '.join(MEL_EXTENSIONS)}")


def load_mel_file(
    path: str | os.PathLike[str],
    n_mels: int,
    *,
    time_first: bool = False,
    expected_by: str = "the checkpoint",
    time_first_hint: str = "pass --time-first",
) -> np.ndarray:
    """Read one mel file -> float32 ``(n_mels, frames)``.

    Raises :class:`~waveflow.errors.InputError` (a ``ValueError``; message without the path, callers
    add it) for unreadable files, files that are not regular files (a FIFO would block), headers
    declaring more data than the file holds, dtypes other than real numbers, wrong layouts or mel
    counts, empty mels and NaN/Inf. Nothing in the file is run (no pickles). ``expected_by`` (what
    wants ``n_mels`` bins) and ``time_first_hint`` (what to do about a file that looks
    ``(frames, n_mels)``) only word the messages.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise InputError("is not a regular file (a folder, FIFO, device or socket)")
    try:
        with warnings.catch_warnings():  # numpy/torch warnings about a foreign file are noise here
            warnings.simplefilter("ignore")
            array = np.asarray(_read_array(path))
    except _ContentError as exc:
        raise InputError(str(exc)) from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise InputError(f"holds pickled Python objects{what}; refused without running them") from None
    except Exception as exc:
        # numpy and torch raise many types for truncated or foreign files (ValueError, OSError,
        # EOFError, RuntimeError, BadZipFile, ...): all mean "cannot be read".
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(f"not a readable {path.suffix} file ({type(exc).__name__}: {first_line})") from None
    if array.dtype.kind not in "fiu":
        raise InputError(f"holds {array.dtype} data, expected floating-point mel values")
    stored_shape = array.shape
    layout = "(frames, n_mels)" if time_first else "(n_mels, frames)"
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # (1, a, b) -> (a, b)
    if array.ndim != 2:
        raise InputError(f"has shape {stored_shape}; expected {layout} or (1, ...) of it")
    if time_first:
        array = array.T  # (frames, n_mels) -> (n_mels, frames)
    if array.shape[0] != n_mels:
        hint = ""
        if array.shape[1] == n_mels:
            hint = " (drop --time-first)" if time_first else f" (it looks time-first: {time_first_hint})"
        raise InputError(
            f"has shape {stored_shape}, read as {layout}: {array.shape[0]} mel bins but {expected_by} "
            f"expects n_mels={n_mels}{hint}"
        )
    if array.shape[1] == 0:
        raise InputError(f"has shape {stored_shape}: no frames")
    if not np.isfinite(array).all():
        num_bad = int((~np.isfinite(array)).sum())
        raise InputError(f"contains {num_bad} NaN/Inf value(s)")
    return np.ascontiguousarray(array, dtype=np.float32)
