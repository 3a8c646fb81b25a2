"""Import NVIDIA WaveGlow checkpoints without executing code from the file.

Three layouts are recognised (xz-compressed files too, by their magic bytes):

* **NVIDIA/waveglow training checkpoints** (``train.py``'s ``save_checkpoint`` and the published
  ``waveglow_256channels*.pt``): ``{'model': <pickled glow.WaveGlow module>, 'iteration',
  'optimizer', 'learning_rate'}``, or only ``'model'``. Unpickling them normally imports NVIDIA's
  ``glow.py`` and can run arbitrary code. Here they go through an **allow-listing unpickler**:
  torch's tensor-rebuild functions, storages, ``OrderedDict`` and ``set`` are resolved; the known
  module classes (``glow.WaveGlow``, ``glow.WN``, ``glow.Invertible1x1Conv``, torch's ``Conv1d``,
  ``ConvTranspose1d``, ``ModuleList`` and the ``WeightNorm`` hook) become inert stand-ins that only
  store their attribute dict; every other global raises :class:`UnsafeCheckpointError`.
* **DeepLearningExamples / torch.hub** checkpoints: ``{'epoch', 'config', 'state_dict', ...}``
  with plain tensors (often with ``module.`` prefixes and per-layer ``cond_layers``); these load
  with ``torch.load(weights_only=True)``.
* **Bare NVIDIA state dicts** (either layout), also loaded with ``weights_only=True``.

Weight-normalised convolutions are always rebuilt from ``weight_g``/``weight_v``: the ``weight``
attribute a pickled NVIDIA module carries is stale (the initial weight of the model
``save_checkpoint`` built, not the trained one).

Name mapping (NVIDIA -> waveflow ``WaveGlow``)::

    upsample.{weight,bias}                   -> upsample.conv.{weight,bias}
    convinv.{k}.conv.weight (c, c, 1)        -> flow.steps.{k}.mix.weight (c, c)
    WN.{k}.<conv>.weight_g / weight_v        -> flow.steps.{k}.coupling.conditioner.<conv>.parametrizations.weight.original0 / original1
    WN.{k}.<conv>.bias, WN.{k}.end.*         -> flow.steps.{k}.coupling.conditioner.<conv>.bias, ....end.*
    WN.{k}.cond_layers.{i}.X (DLE, old)      -> concatenated along dim 0 into ....cond_layer.X
    WN.{k}.res_layers.{i} + skip_layers.{i}  -> ....res_skip_layers.{i} (pre-``convert_model.py`` layout)

This module is also the safe reader behind :mod:`waveflow.checkpoint`. Every failure it reports
is a :class:`waveflow.errors.CheckpointError` naming the file, and it is cheap to be refused:

* **Crafted pickles**: a global outside the allow list is named (``refusing to load 'os.system'``);
  torch's advice to re-run with ``weights_only=False`` is never relayed.
* **Bombs**: an xz file is decompressed incrementally and refused once it would expand beyond
  ``$WAVEFLOW_MAX_CHECKPOINT_BYTES`` (default 1 GiB: NVIDIA's largest published checkpoint is
  about 650 MB), at once when its index already says so; a zip file whose compressed records
  would expand beyond that limit is refused from its directory. A zip file is previewed on the
  meta device (declared shapes, no data) so that its shapes are checked against its config before
  its tensors are read, and a tensor may never declare more data than the file stores for it.
* **Inconsistent or non-finite weights**: tensors are checked against the model they must load
  into (missing, unexpected, misshapen: expected vs found shapes) and for NaN/Inf.
"""

from __future__ import annotations

import _compat_pickle
import io
import lzma
import os
import pickle
import re
import types
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from waveflow.config import ModelConfig, WaveNetConfig
from waveflow.errors import CheckpointError, InputError
from waveflow.flows import EarlyOutputSchedule

XZ_MAGIC = b"\xfd7zXZ\x00"
ZIP_MAGIC = b"PK\x03\x04"

# NVIDIA hard-codes the upsampler's stride (256); a bare state dict cannot tell it.
NVIDIA_HOP_LENGTH = 256

MapLocation = str | torch.device | Mapping[str, str] | Callable | None


class UnsafeCheckpointError(CheckpointError):
    """The file asks the unpickler for a global that is not on the allow list."""


# -- how much a checkpoint may expand to ---------------------------------------------------------
MAX_BYTES_ENV = "WAVEFLOW_MAX_CHECKPOINT_BYTES"
# NVIDIA's largest published WaveGlow file (waveglow_256channels_universal_v5.pt: a pickled module
# with weight-norm copies) is about 650 MB; 1 GiB leaves half as much again on top. The limit only
# applies to bytes a file *expands* to (xz decompression, compressed zip records), never to what
# is stored as is, so a large plain checkpoint always loads.
DEFAULT_MAX_CHECKPOINT_BYTES = 1 << 30
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def max_checkpoint_bytes() -> int:
    """The most bytes a compressed checkpoint may expand to: ``$WAVEFLOW_MAX_CHECKPOINT_BYTES`` or 1 GiB.

    The variable takes a byte count, optionally with a binary unit: ``2G``, ``700M``, ``64k``.
    """
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CHECKPOINT_BYTES
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", raw, flags=re.IGNORECASE)
    if m is None or int(m.group(1)) == 0:
        raise InputError(
            f"{MAX_BYTES_ENV}={raw!r} is not a size in bytes (write e.g. 2G, 700M or 1073741824)"
        )
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def _limit_hint(cap: int) -> str:
    return f"the {cap:,}-byte limit on checkpoints (set {MAX_BYTES_ENV} to raise it)"


# -- reading bytes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointSource:
    """A checkpoint file (or in-memory bytes), xz-decompressed when needed.

    Plain files are opened from disk on every :meth:`open`; xz files and bytes are held in memory.
    """

    label: str
    path: Path | None = None
    data: bytes | None = None
    compressed: bool = False

    @classmethod
    def from_any(
        cls, src: str | Path | bytes | bytearray | memoryview | CheckpointSource
    ) -> CheckpointSource:
        if isinstance(src, CheckpointSource):
            return src
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            label = "<bytes>"
            if data.startswith(XZ_MAGIC):
                return cls(label, data=_decompress_xz(io.BytesIO(data), label), compressed=True)
            return cls(label, data=data)
        path = Path(src)
        label = str(path)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"checkpoint path is a directory, not a file: {path}")
        with open(path, "rb") as f:
            head = f.read(len(XZ_MAGIC))
            if head == XZ_MAGIC:
                return cls(label, path=path, data=_decompress_xz(f, label), compressed=True)
        return cls(label, path=path)

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.path is None:
            raise ValueError("CheckpointSource needs a path or data")
        return open(self.path, "rb")

    def head(self, n: int = 8) -> bytes:
        with self.open() as f:
            return f.read(n)

    @property
    def is_zip(self) -> bool:
        """A torch >= 1.6 (zip) file, whose tensors can be previewed without reading them."""
        return self.head(len(ZIP_MAGIC)) == ZIP_MAGIC


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """One xz multibyte integer (7 bits a byte, least significant first) -> (value, next position)."""
    value = 0
    for i in range(9):
        byte = buf[pos]  # IndexError past the end: malformed
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise ValueError("xz integer longer than 9 bytes")


def xz_declared_size(f: IO[bytes]) -> int | None:
    """What an xz file says it decompresses to, read from its stream indexes (from the end, nothing decompressed).

    Every xz stream ends with an index of its blocks' sizes and a footer that locates the index;
    both carry a CRC32. Streams are walked from the last to the first (stream padding skipped)
    and their uncompressed sizes added up. Returns ``None`` when the file does not end in
    well-formed xz streams (truncated, or not xz); the decompressor then has the last word.
    """
    try:
        end = f.seek(0, io.SEEK_END)
        total = 0
        while end > 0:
            if end < 24:
                return None
            f.seek(end - 4)
            if f.read(4) == b"\0\0\0\0":  # stream padding
                end -= 4
                continue
            f.seek(end - 12)
            footer = f.read(12)
            if footer[10:] != b"YZ" or zlib.crc32(footer[4:10]) != int.from_bytes(footer[:4], "little"):
                return None
            index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
            index_start = end - 12 - index_size
            if index_start < 12:
                return None
            f.seek(index_start)
            index = f.read(index_size)
            if index[0] != 0 or zlib.crc32(index[:-4]) != int.from_bytes(index[-4:], "little"):
                return None
            count, pos = _varint(index, 1)
            blocks = 0
            for _ in range(count):
                unpadded, pos = _varint(index, pos)
                size, pos = _varint(index, pos)
                blocks += (unpadded + 3) // 4 * 4
                total += size
            start = index_start - blocks - 12
            if start < 0:
                return None
            f.seek(start)
            header = f.read(12)
            if header[:6] != XZ_MAGIC or header[6:8] != footer[8:10]:
                return None
            end = start
        return total
    except (OSError, ValueError, IndexError):
        return None


_XZ_CHUNK = 1 << 20


def _decompress_xz(f: IO[bytes], label: str) -> bytes:
    """Decompress an xz file incrementally, never past :func:`max_checkpoint_bytes`.

    A file whose index declares more than the limit is refused before anything is decompressed;
    one without a readable index (truncated) is stopped as soon as its output passes the limit,
    and one that produces more than its index declares is corrupt. Memory: the output, plus 1 MiB.
    """
    cap = max_checkpoint_bytes()
    declared = xz_declared_size(f)
    if declared is not None and declared > cap:
        raise CheckpointError(
            f"{label}: refused without decompressing it: its xz index says it expands to {declared:,} bytes, "
            f"more than {_limit_hint(cap)}"
        )
    limit = cap if declared is None else declared
    f.seek(0)
    out = io.BytesIO()
    written = 0
    decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    pending = b""
    try:
        while True:
            if decompressor.eof:  # another stream may follow, after optional null padding
                pending = decompressor.unused_data.lstrip(b"\0")
                while not pending:
                    more = f.read(_XZ_CHUNK)
                    if not more:
                        return out.getvalue()
                    pending = more.lstrip(b"\0")
                decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
            elif decompressor.needs_input and not pending:
                pending = f.read(_XZ_CHUNK)
                if not pending:
                    raise CheckpointError(
                        f"{label}: corrupt or truncated xz stream (it ends before its end-of-stream marker)"
                    )
            piece = decompressor.decompress(pending, max_length=limit + 1 - written)
            pending = b""
            written += len(piece)
            if written > limit:
                if declared is None:
                    raise CheckpointError(
                        f"{label}: refused: it decompresses to more than {_limit_hint(cap)}; "
                        f"stopped after {limit:,} bytes"
                    )
                raise CheckpointError(
                    f"{label}: corrupt xz file: it decompresses to more than the {declared:,} bytes its index declares"
                )
            out.write(piece)
    except lzma.LZMAError as exc:
        raise CheckpointError(f"{label}: corrupt or truncated xz stream ({exc})") from None


# -- the allow-listing unpickler -----------------------------------------------------------------
class StandIn:
    """An inert placeholder for a pickled NVIDIA/torch module object.

    Unpickling only stores the object's attribute dict; none of the original class's code exists
    here, so nothing from the file runs. ``nvidia_class`` names the class the file asked for.
    """

    nvidia_class = "?"

    def __setstate__(self, state: Any) -> None:
        # Protocol-2 pickles of nn.Module carry their __dict__; (dict, slots) pairs are merged.
        if isinstance(state, tuple) and len(state) == 2:
            for part in state:
                if isinstance(part, dict):
                    self.__dict__.update(part)
        elif isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"<stand-in for {self.nvidia_class}>"


_STAND_INS: dict[str, type[StandIn]] = {}


def _stand_in(qualified_name: str) -> type[StandIn]:
    if qualified_name not in _STAND_INS:
        short = qualified_name.rsplit(".", 1)[-1]
        _STAND_INS[qualified_name] = type(f"StandIn_{short}", (StandIn,), {"nvidia_class": qualified_name})
    return _STAND_INS[qualified_name]


# Callables the pickle may invoke: torch's own tensor rebuilding and plain containers.
_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,  # torch < 1.0 pickled parameters this way
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
}

# torch module classes a pickled WaveGlow contains; they become stand-ins.
_TORCH_MODULE_CLASSES = {
    ("torch.nn.modules.conv", "Conv1d"),
    ("torch.nn.modules.conv", "ConvTranspose1d"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.utils.weight_norm", "WeightNorm"),
}

_NVIDIA_CLASS_NAMES = {"WaveGlow", "WN", "Invertible1x1Conv"}
# glow.py (current), glow_old.py (alternating halves), also when imported from a package
# (e.g. ``waveglow.glow``), and DeepLearningExamples' ``waveglow.model``.
_NVIDIA_MODULE_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)*(?:glow|glow_old)$|^waveglow\.model$")


# Modules that Python pickles under their implementation's name: os.system is 'posix.system'.
_MODULE_ALIASES = {"posix": "os", "nt": "os", "_operator": "operator", "_io": "io", "_codecs": "codecs"}


def _resolve_global(module: str, name: str, label: str) -> Any:
    # torch.save writes protocol 2, which names builtins by their Python 2 modules
    # ('__builtin__.set'); translate them as pickle's fix_imports does.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    key = (module, name)
    if key in _ALLOWED_CALLABLES:
        return _ALLOWED_CALLABLES[key]
    if key in _TORCH_MODULE_CLASSES:
        return _stand_in(f"{module}.{name}")
    if name in _NVIDIA_CLASS_NAMES and _NVIDIA_MODULE_RE.match(module):
        return _stand_in(f"{module}.{name}")
    pickled = f"{module}.{name}"
    alias = _MODULE_ALIASES.get(module)
    shown = f"'{alias}.{name}' (pickled as {pickled})" if alias else repr(pickled)
    raise UnsafeCheckpointError(
        f"refusing to load {shown} from {label}: the file's pickle asks for this global, which is not on "
        f"the allow list (tensors, plain containers and NVIDIA WaveGlow's classes); nothing from the file ran"
    )


def restricted_pickle_module(label: str) -> types.ModuleType:
    """A ``pickle``-like module for ``torch.load(pickle_module=...)`` that resolves only allowed globals.

    Both ``Unpickler`` (used by torch's zip and legacy loaders through a subclass) and ``load``
    (used by the legacy loader for its magic number, protocol and storage tables) go through
    :func:`_resolve_global`. ``label`` names the file in error messages.
    """

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _resolve_global(module, name, label)

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()

    mod = types.ModuleType("waveflow_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    mod.load = load  # type: ignore[attr-defined]
    mod.__version__ = "1"  # type: ignore[attr-defined]
    return mod


# -- what a refused or unreadable file is ----------------------------------------------------------
# Sentences of torch's messages that are advice, not facts about the file. torch's weights-only
# refusal suggests re-running with weights_only=False: never relay that for an untrusted file.
_TORCH_ADVICE = re.compile(
    r"weights.only|trusted source|miniz|if you are seeing this|this can happen if|check the documentation"
    r"|file an issue|https?://",
    re.IGNORECASE,
)


def torch_reason(exc: BaseException) -> str:
    """torch's error message reduced to its facts: advice sentences dropped, one line, at most 300 characters."""
    sentences = re.split(r"(?<=[.!?])\s+|\n+", str(exc))
    kept = [" ".join(x.split()) for x in sentences if x.strip() and not _TORCH_ADVICE.search(x)]
    return (" ".join(kept) or type(exc).__name__)[:300]


def _corrupt(label: str, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{label} is not a readable PyTorch checkpoint: the file is corrupt or truncated ({torch_reason(exc)})"
    )


class WeightsOnlyRefusal(CheckpointError, pickle.UnpicklingError):
    """``torch.load(weights_only=True)`` refused the file's pickle.

    ``reason``: torch's reason without its advice; ``global_name``: the global it refused, when
    torch named one. Callers decide what the file is (:func:`load_any` retries with the allow list).
    """

    def __init__(self, label: str, exc: BaseException):
        self.reason = torch_reason(exc)
        self.global_name = refused_global(exc)
        super().__init__(f"{label}: a weights-only load refused its pickle ({self.reason})")


def _check_torch_file(source: CheckpointSource) -> None:
    head = source.head(2)
    if not head:
        raise CheckpointError(f"{source.label} is empty, not a PyTorch checkpoint file")
    # torch.save writes a zip archive (torch >= 1.6) or a protocol-2 pickle stream (legacy).
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(f"{source.label} is not a PyTorch checkpoint file (starts with {head!r})")


def _check_zip(source: CheckpointSource) -> None:
    """Checks a zip checkpoint's directory allows, before torch reads any record.

    Refuses TorchScript archives (``torch.load`` would hand them to ``torch.jit.load``), archives
    Python's ``zipfile`` cannot read, and "zip bombs": records compressed to a fraction of the
    size they declare, whose expansion exceeds :func:`max_checkpoint_bytes` (torch itself
    stores its records uncompressed, so its own files never expand).
    """
    if not source.head(2).startswith(b"PK"):
        return
    with source.open() as f:
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise _corrupt(source.label, exc) from None
    if any(i.filename.rsplit("/", 1)[-1] == "constants.pkl" for i in infos):
        raise CheckpointError(f"{source.label} is a TorchScript archive, not a checkpoint")
    stored = sum(i.compress_size for i in infos)
    expanded = sum(i.file_size for i in infos)
    cap = max_checkpoint_bytes()
    if expanded - stored > cap:
        raise CheckpointError(
            f"{source.label}: refused before reading it: its compressed zip records expand from {stored:,} "
            f"to {expanded:,} bytes, more than {_limit_hint(cap)}"
        )


_REFUSED_GLOBAL_RE = re.compile(r"GLOBAL ([A-Za-z_][\w.]*[\w])")


def refused_global(exc: BaseException) -> str | None:
    """The global a ``weights_only`` load refused, parsed from torch's message (or None)."""
    m = _REFUSED_GLOBAL_RE.search(str(exc))
    return m.group(1) if m else None


# -- tensors that declare more than the file holds ---------------------------------------------------
_VIEW_SLACK_BYTES = 1 << 20


def _tensors(obj: Any, label: str, where: str = "", depth: int = 0, seen: set[int] | None = None):
    """``(path, tensor)`` for every tensor in an unpickled object (dicts, sequences, stand-ins)."""
    if isinstance(obj, Tensor):
        yield where or "<top level>", obj
        return
    if isinstance(obj, StandIn):
        items: Any = obj.__dict__.items()
    elif isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = enumerate(obj)
    else:
        return
    seen = set() if seen is None else seen
    if id(obj) in seen:  # pickles can share and even nest objects in themselves
        return
    seen.add(id(obj))
    if depth > 64:
        raise CheckpointError(f"{label}: objects nested more than 64 levels deep at {where}")
    for key, value in items:
        yield from _tensors(value, label, f"{where}.{key}" if where else str(key), depth + 1, seen)


def check_tensor_sizes(obj: Any, label: str) -> None:
    """Refuse tensors that declare more data than the file stores for them, before any is used.

    A pickle can rebuild a tensor as a view with zero strides: a few stored bytes then declare
    gigabytes, which the first copy, cast or check would allocate. Checkpoint tensors are
    plain views of their storage, so a tensor may not exceed its storage (1 MiB of slack). On
    the meta device (a preview) the storage size is the one the file declares. Non-dense
    layouts (sparse, ...) are refused too.
    """
    try:
        for where, t in _tensors(obj, label):
            if t.layout != torch.strided:
                raise CheckpointError(
                    f"{label}: {where} is a {t.layout} tensor; checkpoints hold dense tensors"
                )
            stored = t.untyped_storage().nbytes()
            declared = t.numel() * t.element_size()
            if declared > stored + _VIEW_SLACK_BYTES:
                raise CheckpointError(
                    f"{label}: refused: tensor {where} declares shape {tuple(t.shape)} ({declared:,} bytes) "
                    f"over {stored:,} stored bytes (a repeated view that would have to be materialised)"
                )
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # an exotic tensor type
        raise CheckpointError(
            f"{label}: holds a tensor waveflow cannot check ({torch_reason(exc)})"
        ) from None


# -- loading -----------------------------------------------------------------------------------------
def load_weights_only(source: CheckpointSource, map_location: MapLocation = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with errors turned into :class:`CheckpointError` naming the file.

    A refused pickle raises :class:`WeightsOnlyRefusal` (also a ``pickle.UnpicklingError``);
    callers decide what it means. ``map_location="meta"`` previews a zip file: every tensor
    gets its declared shape and no data is read.
    """
    _check_torch_file(source)
    _check_zip(source)
    with source.open() as f:
        try:
            obj = torch.load(f, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise WeightsOnlyRefusal(source.label, exc) from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise _corrupt(source.label, exc) from None
    check_tensor_sizes(obj, source.label)
    return obj


def load_restricted(source: CheckpointSource, map_location: MapLocation = "cpu") -> Any:
    """Unpickle with the allow list: NVIDIA module objects come back as :class:`StandIn` objects."""
    _check_torch_file(source)
    _check_zip(source)
    with source.open() as f, warnings.catch_warnings():
        # The legacy loader tries to read the source of every pickled module class; the stand-ins
        # have none, which is expected.
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
        try:
            obj = torch.load(
                f,
                map_location=map_location,
                pickle_module=restricted_pickle_module(source.label),
                weights_only=False,
            )
        except UnsafeCheckpointError:
            raise
        except Exception as exc:  # untrusted bytes: any failure means an unreadable file
            raise _corrupt(source.label, exc) from None
    check_tensor_sizes(obj, source.label)
    return obj


def load_any(
    source: CheckpointSource, map_location: MapLocation = "cpu", *, allow_list: bool | None = None
) -> tuple[Any, bool]:
    """Load with ``weights_only=True``; if it refuses the pickle, retry with the allow list.

    ``allow_list``: ``True`` goes straight to the allow list, ``False`` never uses it (``None``:
    as needed). Returns ``(object, used_allow_list)``. A file asking for anything else raises
    :class:`UnsafeCheckpointError` naming the global.
    """
    if not allow_list:
        try:
            return load_weights_only(source, map_location), False
        except WeightsOnlyRefusal:
            if allow_list is False:
                raise
    return load_restricted(source, map_location), True


def preview(source: CheckpointSource, *, allow_list: bool | None = None) -> tuple[Any, bool] | None:
    """:func:`load_any` with every tensor on the meta device: declared shapes, no tensor data read.

    Only zip (torch >= 1.6) files can be previewed; legacy files give ``None`` (their tensors
    are read with the pickle, and they are no larger than the file).
    """
    if not source.is_zip:
        return None
    return load_any(source, "meta", allow_list=allow_list)


def find_stand_in(obj: Any) -> StandIn | None:
    """The first pickled module object (a :class:`StandIn`) in an unpickled checkpoint, if any."""
    if isinstance(obj, StandIn):
        return obj
    values = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (list, tuple)) else ()
    for value in values:
        if isinstance(value, StandIn):
            return value
    return None


# -- weights against their config -------------------------------------------------------------------
_FACTORIES = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.rand,
    torch.randn,
    torch.eye,
    torch.empty_strided,
}


# In-place random initialisers: a model built only for its shapes skips them (most of the build time).
_INITIALISERS = {
    "uniform_",
    "normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "trunc_normal_",
    "orthogonal_",
}


class _AllocationBudget(TorchFunctionMode):
    """Counts the bytes torch's factory functions are asked for, and stops before the budget is spent.

    Building a model allocates (and initialises) every parameter; a crafted config can declare a
    model of terabytes in a few bytes of text. Every parameter and buffer starts from a factory
    call (``torch.empty`` in ``nn.Conv1d``, ``torch.randn`` ...), so the sizes are known first.
    The model is only wanted for its shapes, so random initialisation is skipped.
    """

    def __init__(self, budget: int, label: str):
        super().__init__()
        self.left = budget
        self.label = label

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in _INITIALISERS:
            tensor = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(tensor, Tensor):
                return tensor
        if func in _FACTORIES:
            if func is torch.eye:
                dims = [args[0], args[1] if len(args) > 1 and isinstance(args[1], int) else args[0]]
            elif func is torch.full or func is torch.empty_strided:
                dims = list(args[0]) if args else list(kwargs.get("size", ()))
            elif args and isinstance(args[0], (tuple, list, torch.Size)):
                dims = list(args[0])
            else:
                dims = [a for a in args if isinstance(a, int)] or list(kwargs.get("size", ()))
            numel = 1
            for d in dims:
                numel *= max(int(d), 0)
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            self.left -= numel * dtype.itemsize
            if self.left < 0:
                raise CheckpointError(
                    f"{self.label}: the weights do not fit the stored config: it describes a model far larger "
                    f"than the tensors the file holds (refused before building it)"
                )
        return func(*args, **kwargs)


_SHAPES_CACHE: OrderedDict[tuple[ModelConfig, bool], dict[str, tuple[int, ...]]] = OrderedDict()


def expected_shapes(
    config: ModelConfig,
    weight_norm_folded: bool = False,
    *,
    budget: int | None = None,
    label: str = "checkpoint",
) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of ``WaveGlow(config)`` (after folding weight norm if asked); cached per config.

    The model is built on the CPU and dropped (PyTorch's meta device would allocate nothing, but
    its first use costs seconds of imports). ``budget``: the most bytes the build may allocate;
    a config that asks for more raises :class:`CheckpointError` before the allocation.
    """
    from waveflow.model import WaveGlow

    key = (config, weight_norm_folded)
    if key in _SHAPES_CACHE:
        _SHAPES_CACHE.move_to_end(key)
        return _SHAPES_CACHE[key]
    with _AllocationBudget(budget if budget is not None else 1 << 62, label), torch.no_grad():
        model = WaveGlow(config)
        if weight_norm_folded:
            model.remove_weight_norm()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    del model
    _SHAPES_CACHE[key] = shapes
    while len(_SHAPES_CACHE) > 8:
        _SHAPES_CACHE.popitem(last=False)
    return shapes


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return str(tuple(shape))


def check_state_dict_fits(
    config: ModelConfig,
    state_dict: Mapping[str, Tensor],
    weight_norm_folded: bool,
    label: str,
    *,
    rename: Callable[[str], str] | None = None,
    what: str = "the stored config",
) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` loads strictly into ``WaveGlow(config)``.

    Works on meta tensors too (a preview), so the shapes a file declares are checked before its
    tensors are read. The expected shapes come from a model built without initialisation, whose
    allocations may not exceed four times the bytes ``state_dict`` declares (plus 64 MiB): a
    config that declares a far larger model is refused before it is built. The message names every missing, unexpected or misshapen tensor (the
    first six), with expected and found shapes; ``rename`` maps waveflow's names to the file's.
    """
    name = rename or (lambda k: k)
    # The model's size follows the config alone; one whose layers far outnumber the stored tensors
    # cannot fit and is not worth building (its Python objects alone could take minutes).
    layers = config.n_flows * max(1, config.wavenet.n_layers)
    if layers > 4 * len(state_dict) + 64:
        raise CheckpointError(
            f"{label}: the weights do not fit {what}: it has {config.n_flows} flows of "
            f"{config.wavenet.n_layers} layers, but the file holds only {len(state_dict)} tensors"
        )
    # Building the model may allocate what the file declares, with room for dtype casts (fp16
    # files) and the initialisation's temporaries; a config asking for more is refused unbuilt.
    declared = sum(t.numel() * t.element_size() for t in state_dict.values())
    budget = 4 * declared + (64 << 20)
    expected = expected_shapes(config, weight_norm_folded, budget=budget, label=label)
    problems = []
    for key, shape in expected.items():
        if key not in state_dict:
            problems.append(f"{name(key)} is missing (expected shape {_shape(shape)})")
        elif tuple(state_dict[key].shape) != shape:
            problems.append(
                f"{name(key)} has shape {_shape(state_dict[key].shape)}, expected {_shape(shape)}"
            )
    problems += [f"{name(key)} is unexpected" for key in state_dict if key not in expected]
    if problems:
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        raise CheckpointError(f"{label}: the weights do not fit {what}: {'; '.join(problems[:6])}{more}")


def check_finite(
    state_dict: Mapping[str, Tensor], label: str, *, rename: Callable[[str], str] | None = None
) -> None:
    """Raise :class:`CheckpointError` naming the tensors that hold NaN or Inf (meta tensors are skipped)."""
    name = rename or (lambda k: k)
    bad = [name(key) for key, t in state_dict.items() if not _finite(t)]
    if bad:
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        raise CheckpointError(
            f"{label}: non-finite weights (NaN or Inf) in {len(bad)} tensor(s): {', '.join(bad[:6])}{more}; "
            f"a model with them only produces NaN, so it was not loaded"
        )


def _finite(t: Tensor) -> bool:
    if not t.is_floating_point() or t.device.type == "meta" or t.numel() == 0:
        return True
    # One float64 sum is NaN/Inf when any element is (and cannot overflow for finite float32
    # values); only then is the element-wise test (a bool tensor as large as t) needed.
    if bool(torch.isfinite(t.sum(dtype=torch.float64))):
        return True
    return bool(torch.isfinite(t).all())


_WF_CONDITIONER_RE = re.compile(r"flow\.steps\.(\d+)\.coupling\.conditioner\.(.+)")


def nvidia_key(key: str) -> str:
    """The NVIDIA name of a waveflow ``WaveGlow`` state-dict key (for messages about NVIDIA files)."""
    if key.startswith("upsample.conv."):
        return "upsample." + key[len("upsample.conv.") :]
    if m := re.fullmatch(r"flow\.steps\.(\d+)\.mix\.weight", key):
        return f"convinv.{m.group(1)}.conv.weight"
    if m := _WF_CONDITIONER_RE.fullmatch(key):
        rest = m.group(2)
        for nv_name, wf_name in _WN_PARAM.items():
            rest = rest.replace(wf_name, nv_name)
        return f"WN.{m.group(1)}.{rest}"
    return key


# -- NVIDIA state dict -> waveflow ---------------------------------------------------------------
_WN_PARAM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


@dataclass
class NvidiaImport:
    """The result of reading an NVIDIA checkpoint.

    ``format``: ``"nvidia-original"`` (pickled ``glow.WaveGlow``), ``"nvidia-dle"``
    (DeepLearningExamples / torch.hub) or ``"nvidia-state-dict"``. ``state_dict`` loads into
    ``WaveGlow(config)`` with ``strict=True``. ``weight_norm_folded``: the file held plain
    ``weight`` tensors (NVIDIA's ``remove_weightnorm`` had been applied), so ``config.weight_norm``
    is false. ``info``: what else the file said (``iteration``, ``epoch``, ``learning_rate``).
    """

    format: str
    config: ModelConfig
    state_dict: dict[str, Tensor]
    weight_norm_folded: bool
    info: dict[str, Any] = field(default_factory=dict)


def _int_attr(obj: StandIn, name: str, label: str) -> int | None:
    value = obj.__dict__.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(
            f"{label}: attribute {name!r} of {obj.nvidia_class} is {value!r}, expected an integer"
        )
    return value


def flatten_module(
    obj: StandIn, label: str, prefix: str = "", out: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """The ``state_dict()`` a pickled module object would give: ``_parameters`` and ``_buffers``, recursively.

    Plain tensor attributes (such as weight norm's stale ``weight``) are deliberately ignored.
    """
    out = {} if out is None else out
    if prefix.count(".") > 16:
        raise CheckpointError(f"{label}: module tree is nested too deeply at {prefix!r}")
    state = obj.__dict__
    for table in ("_parameters", "_buffers"):
        entries = state.get(table) or {}
        if not isinstance(entries, Mapping):
            raise CheckpointError(f"{label}: {prefix or 'model'}.{table} is not a mapping")
        for name, t in entries.items():
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise CheckpointError(f"{label}: {prefix}{name} is a {type(t).__name__}, expected a tensor")
            out[f"{prefix}{name}"] = t
    children = state.get("_modules") or {}
    if not isinstance(children, Mapping):
        raise CheckpointError(f"{label}: {prefix or 'model'}._modules is not a mapping")
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, StandIn):
            raise CheckpointError(f"{label}: submodule {prefix}{name} is a {type(child).__name__}")
        flatten_module(child, label, f"{prefix}{name}.", out)
    return out


def _split_conv_params(sub: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    convs: dict[str, dict[str, Tensor]] = {}
    for key, t in sub.items():
        conv, _, param = key.rpartition(".")
        convs.setdefault(conv, {})[param] = t
    return convs


def _conv_kind(params: Mapping[str, Tensor], where: str) -> bool:
    """True if the conv is weight-normalised (g, v, bias); False if it holds a plain weight."""
    names = set(params)
    if names == {"weight_g", "weight_v", "bias"}:
        return True
    if names == {"weight", "bias"}:
        return False
    wanted = {"weight_g", "weight_v", "bias"} if names & {"weight_g", "weight_v"} else {"weight", "bias"}
    problems = [f"{where}.{n} is missing" for n in sorted(wanted - names)]
    problems += [f"{where}.{n} is unexpected" for n in sorted(names - wanted)]
    raise CheckpointError(
        "; ".join(problems) + " (a convolution holds bias + weight_g/weight_v, or bias + weight)"
    )


def _cat_params(parts: list[dict[str, Tensor]], where: str) -> dict[str, Tensor]:
    names = set(parts[0])
    if any(set(p) != names for p in parts):
        raise CheckpointError(f"{where}: the layers to fuse hold different parameters")
    # Weight norm is per output channel (dim 0), so stacking g, v and bias along dim 0 is exact.
    return {n: _cat0([p[n] for p in parts], f"{where}.{n}") for n in sorted(names)}


def _cat0(tensors: list[Tensor], where: str) -> Tensor:
    """``torch.cat(tensors, 0)``; on the meta device (a preview) only the shape is made, which is cheap."""
    if any(t.dim() == 0 for t in tensors) or len({(tuple(t.shape[1:]), t.dtype) for t in tensors}) != 1:
        shapes = ", ".join(_shape(t.shape) for t in tensors)
        raise CheckpointError(f"{where}: the layers to fuse have shapes {shapes}, which do not stack")
    if any(t.device.type == "meta" for t in tensors):
        first = tensors[0]
        return torch.empty(
            (sum(t.shape[0] for t in tensors), *first.shape[1:]), dtype=first.dtype, device="meta"
        )
    return torch.cat(tensors, dim=0)


def _indexed(convs: Mapping[str, Any], name: str, where: str) -> list[int]:
    idx = sorted(int(k.split(".")[1]) for k in convs if re.fullmatch(rf"{name}\.\d+", k))
    if idx != list(range(len(idx))):
        raise CheckpointError(f"{where}: {name} indices are not 0..n-1: {idx[:16]}")
    return idx


def _convert_wn(sub: Mapping[str, Tensor], where: str) -> tuple[dict[str, Tensor], dict[str, int], bool]:
    """One NVIDIA ``WN`` (keys relative to it) -> waveflow ``WaveNet`` keys, sizes, folded flag."""
    convs = _split_conv_params(sub)
    layers = _indexed(convs, "in_layers", where)
    if not layers:
        raise CheckpointError(f"{where}: no in_layers")
    n_layers = len(layers)
    fused: dict[str, dict[str, Tensor]] = {}
    for name in ("start", "end"):
        if name not in convs:
            raise CheckpointError(f"{where}: missing {name}")
        fused[name] = convs.pop(name)
    for i in layers:
        fused[f"in_layers.{i}"] = convs.pop(f"in_layers.{i}")

    if "cond_layer" in convs:
        fused["cond_layer"] = convs.pop("cond_layer")
    else:
        cond = _indexed(convs, "cond_layers", where)
        if len(cond) != n_layers:
            raise CheckpointError(f"{where}: {len(cond)} cond_layers for {n_layers} in_layers")
        fused["cond_layer"] = _cat_params(
            [convs.pop(f"cond_layers.{i}") for i in cond], f"{where}.cond_layers"
        )

    if any(k.startswith("res_skip_layers.") for k in convs):
        rs = _indexed(convs, "res_skip_layers", where)
        if len(rs) != n_layers:
            raise CheckpointError(f"{where}: {len(rs)} res_skip_layers for {n_layers} in_layers")
        for i in rs:
            fused[f"res_skip_layers.{i}"] = convs.pop(f"res_skip_layers.{i}")
    else:
        # Before convert_model.py: separate residual (n_layers - 1 of them) and skip convolutions.
        res = _indexed(convs, "res_layers", where)
        skip = _indexed(convs, "skip_layers", where)
        if len(skip) != n_layers or len(res) != n_layers - 1:
            raise CheckpointError(
                f"{where}: expected res_skip_layers, or {n_layers - 1} res_layers + {n_layers} skip_layers"
            )
        for i in skip:
            parts = [convs.pop(f"res_layers.{i}")] if i < n_layers - 1 else []
            parts.append(convs.pop(f"skip_layers.{i}"))
            fused[f"res_skip_layers.{i}"] = _cat_params(parts, f"{where}.res_skip_layers.{i}")
    if convs:
        raise CheckpointError(f"{where}: unexpected entries {sorted(convs)}")

    end = fused["end"]
    if set(end) != {"weight", "bias"}:
        problems = [f"{where}.end.{n} is missing" for n in sorted({"weight", "bias"} - set(end))]
        problems += [f"{where}.end.{n} is unexpected" for n in sorted(set(end) - {"weight", "bias"})]
        raise CheckpointError("; ".join(problems) + " (end holds a plain weight and bias)")
    kinds = {name: _conv_kind(p, f"{where}.{name}") for name, p in fused.items() if name != "end"}
    if len(set(kinds.values())) != 1:
        raise CheckpointError(f"{where}: some convolutions have weight norm and others do not")
    has_wn = next(iter(kinds.values()))

    out: dict[str, Tensor] = {}
    for name, params in fused.items():
        for param, t in params.items():
            out[f"{name}.{_WN_PARAM.get(param, param)}"] = t

    def weight(name: str) -> Tensor:
        return fused[name]["weight_v" if has_wn else "weight"]

    start_w, in_w, cond_w, end_w = weight("start"), weight("in_layers.0"), weight("cond_layer"), end["weight"]
    sizes = {
        "n_layers": n_layers,
        "n_channels": start_w.shape[0],
        "kernel_size": in_w.shape[2],
        "in_channels": start_w.shape[1],
        "out_channels": end_w.shape[0],
        "cond_channels": cond_w.shape[1],
        "cond_out": cond_w.shape[0],
    }
    c = sizes["n_channels"]
    if sizes["cond_out"] != 2 * c * n_layers:
        raise CheckpointError(
            f"{where}: cond_layer has {sizes['cond_out']} outputs, expected 2*{c}*{n_layers}"
        )
    return out, sizes, not has_wn


def convert_state_dict(
    nvidia: Mapping[str, Any],
    *,
    n_early_every: int | None = None,
    n_early_size: int | None = None,
    hop_length: int | None = None,
    alternate_halves: bool = False,
    label: str = "state dict",
) -> tuple[ModelConfig, dict[str, Tensor], bool]:
    """An NVIDIA WaveGlow state dict (original or DLE layout) -> ``(ModelConfig, state_dict, folded)``.

    Sizes come from tensor shapes; the early-output schedule from the 1x1 convolution sizes unless
    ``n_early_every``/``n_early_size`` are given (they are then checked against the shapes).
    ``hop_length`` is the upsampler's stride (NVIDIA: 256), which shapes cannot reveal. Any
    ``module.``-style prefix in front of ``upsample.weight`` is stripped. Floating tensors are cast
    to float32. ``folded``: the file holds plain weights, and ``config.weight_norm`` is false.
    """
    anchors = [
        k for k in nvidia if isinstance(k, str) and (k == "upsample.weight" or k.endswith(".upsample.weight"))
    ]
    if not anchors:
        raise CheckpointError(f"{label}: no 'upsample.weight' entry, so this is not a WaveGlow state dict")
    prefixes = {k[: -len("upsample.weight")] for k in anchors}
    if len(prefixes) != 1:
        raise CheckpointError(
            f"{label}: several WaveGlow models in one state dict (prefixes {sorted(prefixes)})"
        )
    prefix = prefixes.pop()
    sd: dict[str, Tensor] = {}
    for k, v in nvidia.items():
        if isinstance(k, str) and k.startswith(prefix):
            if not isinstance(v, Tensor):
                raise CheckpointError(f"{label}: {k} is a {type(v).__name__}, expected a tensor")
            v = v.detach()  # drops any hooks the file attached to the tensor
            sd[k[len(prefix) :]] = v.float() if v.is_floating_point() else v

    out: dict[str, Tensor] = {}
    up_w = sd.pop("upsample.weight")
    if "upsample.bias" not in sd:
        raise CheckpointError(f"{label}: upsample.bias is missing")
    up_b = sd.pop("upsample.bias")
    if up_w.dim() != 3 or up_w.shape[0] != up_w.shape[1]:
        raise CheckpointError(
            f"{label}: upsample.weight has shape {tuple(up_w.shape)}, expected (n_mels, n_mels, kernel)"
        )
    n_mels, kernel = up_w.shape[0], up_w.shape[2]
    out["upsample.conv.weight"], out["upsample.conv.bias"] = up_w, up_b

    flows = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"convinv\.(\d+)\.conv\.weight", k)))
    if not flows or flows != list(range(len(flows))):
        raise CheckpointError(f"{label}: convinv indices are not 0..n-1: {flows}")
    n_flows = len(flows)
    channels: list[int] = []
    wn_sizes: list[dict[str, int]] = []
    folded_flags = set()
    for k in flows:
        w = sd.pop(f"convinv.{k}.conv.weight")
        sd.pop(f"convinv.{k}.W_inverse", None)  # a cached inverse, if infer() ran before saving
        if w.dim() != 3 or w.shape[0] != w.shape[1] or w.shape[2] != 1:
            raise CheckpointError(
                f"{label}: convinv.{k}.conv.weight has shape {tuple(w.shape)}, expected (c, c, 1)"
            )
        out[f"flow.steps.{k}.mix.weight"] = w.squeeze(-1)  # (c, c, 1) -> (c, c)
        channels.append(w.shape[0])
        wn_prefix = f"WN.{k}."
        sub = {key[len(wn_prefix) :]: sd.pop(key) for key in [key for key in sd if key.startswith(wn_prefix)]}
        if not sub:
            raise CheckpointError(f"{label}: missing WN.{k}")
        wn_out, sizes, folded = _convert_wn(sub, f"{label}: WN.{k}")
        for key, t in wn_out.items():
            out[f"flow.steps.{k}.coupling.conditioner.{key}"] = t
        wn_sizes.append(sizes)
        folded_flags.add(folded)
    if sd:
        raise CheckpointError(f"{label}: unexpected entries {sorted(sd)[:8]}")
    if len(folded_flags) != 1:
        raise CheckpointError(f"{label}: some flows have weight norm and others do not")
    folded = folded_flags.pop()

    n_group = channels[0]
    if n_early_every is None or n_early_size is None:
        drops = [
            (k, channels[k - 1] - channels[k]) for k in range(1, n_flows) if channels[k] != channels[k - 1]
        ]
        n_early_every, n_early_size = (drops[0][0], drops[0][1]) if drops else (n_flows, 0)
    schedule = EarlyOutputSchedule.compute(n_flows, n_group, n_early_every, n_early_size)
    if list(schedule.channels) != channels:
        raise CheckpointError(
            f"{label}: 1x1 convolution sizes {channels} do not follow an early-output schedule "
            f"(every {n_early_every}, size {n_early_size} gives {list(schedule.channels)})"
        )
    for key in ("n_layers", "n_channels", "kernel_size"):
        values = {s[key] for s in wn_sizes}
        if len(values) != 1:
            raise CheckpointError(f"{label}: WN {key} differs between flows: {sorted(values)}")
    for k, (c, s) in enumerate(zip(channels, wn_sizes)):
        n_a = c // 2
        if s["in_channels"] != n_a or s["out_channels"] != 2 * (c - n_a):
            raise CheckpointError(
                f"{label}: WN.{k} maps {s['in_channels']} -> {s['out_channels']} channels; "
                f"a {c}-channel coupling needs {n_a} -> {2 * (c - n_a)}"
            )
        if s["cond_channels"] != n_mels * n_group:
            raise CheckpointError(
                f"{label}: WN.{k}.cond_layer takes {s['cond_channels']} channels, expected n_mels*n_group = {n_mels * n_group}"
            )
    config = ModelConfig(
        n_mels=n_mels,
        hop_length=NVIDIA_HOP_LENGTH if hop_length is None else hop_length,
        upsample_kernel_size=kernel,
        n_flows=n_flows,
        n_group=n_group,
        n_early_every=n_early_every,
        n_early_size=n_early_size,
        wavenet=WaveNetConfig(
            n_layers=wn_sizes[0]["n_layers"],
            n_channels=wn_sizes[0]["n_channels"],
            kernel_size=wn_sizes[0]["kernel_size"],
        ),
        alternate_halves=alternate_halves,
        weight_norm=not folded,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise CheckpointError(f"{label}: the tensors describe an invalid model: {exc}") from None
    check_state_dict_fits(
        config, out, False, label, rename=nvidia_key, what="the model its other tensors describe"
    )
    check_finite(out, label, rename=nvidia_key)
    return config, out, folded


def _from_stand_in(model: StandIn, label: str, info: dict[str, Any]) -> NvidiaImport:
    if model.nvidia_class.rsplit(".", 1)[-1] != "WaveGlow":
        raise CheckpointError(f"{label}: 'model' is a pickled {model.nvidia_class}, expected a WaveGlow")
    flat = flatten_module(model, label)
    every = _int_attr(model, "n_early_every", label)
    size = _int_attr(model, "n_early_size", label)
    hop = None
    upsample = (model.__dict__.get("_modules") or {}).get("upsample")
    if isinstance(upsample, StandIn):
        stride = upsample.__dict__.get("stride")
        if isinstance(stride, tuple) and len(stride) == 1 and isinstance(stride[0], int):
            hop = stride[0]
    # glow_old.py's WaveGlow alternates which half conditions the coupling (odd flows use the
    # second half); the current glow.py and DeepLearningExamples never do.
    alternate = model.nvidia_class.split(".")[-2] == "glow_old"
    config, sd, folded = convert_state_dict(
        flat, n_early_every=every, n_early_size=size, hop_length=hop, alternate_halves=alternate, label=label
    )
    n_flows = _int_attr(model, "n_flows", label)
    n_group = _int_attr(model, "n_group", label)
    if (n_flows is not None and n_flows != config.n_flows) or (
        n_group is not None and n_group != config.n_group
    ):
        raise CheckpointError(
            f"{label}: attributes say n_flows={n_flows}, n_group={n_group} but the weights have "
            f"{config.n_flows} flows of {config.n_group} channels"
        )
    return NvidiaImport("nvidia-original", config, sd, folded, info)


def _plain_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dle_schedule(cfg: Any, label: str) -> tuple[int | None, int | None]:
    if cfg is None:
        return None, None
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{label}: 'config' is a {type(cfg).__name__}, expected a dict")
    every, size = cfg.get("n_early_every"), cfg.get("n_early_size")
    if (every is not None and not isinstance(every, int)) or (size is not None and not isinstance(size, int)):
        raise CheckpointError(
            f"{label}: config n_early_every={every!r}, n_early_size={size!r} are not integers"
        )
    return every, size


def _check_dle_config(cfg: Any, config: ModelConfig, label: str) -> None:
    if not isinstance(cfg, Mapping):
        return
    wn = cfg.get("WN_config") or {}
    expected = {
        "n_mel_channels": config.n_mels,
        "n_flows": config.n_flows,
        "n_group": config.n_group,
        "n_layers": config.wavenet.n_layers,
        "n_channels": config.wavenet.n_channels,
        "kernel_size": config.wavenet.kernel_size,
    }
    stated = {**{k: cfg.get(k) for k in ("n_mel_channels", "n_flows", "n_group")}, **dict(wn)}
    bad = {k: (stated[k], v) for k, v in expected.items() if stated.get(k) is not None and stated[k] != v}
    if bad:
        detail = ", ".join(f"{k}: config {a} vs weights {b}" for k, (a, b) in bad.items())
        raise CheckpointError(f"{label}: the stored config disagrees with the weights ({detail})")


def convert_loaded(obj: Any, label: str) -> NvidiaImport:
    """Recognise an already-unpickled NVIDIA checkpoint object and convert it."""
    if isinstance(obj, StandIn):  # torch.save(model) of the bare module
        return _from_stand_in(obj, label, {})
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{label}: holds a {type(obj).__name__}, not an NVIDIA WaveGlow checkpoint")
    if obj.get("format") == "waveflow":
        raise CheckpointError(
            f"{label} is a waveflow checkpoint; load it with waveflow.checkpoint.load_checkpoint"
        )
    info = {k: obj[k] for k in ("iteration", "epoch", "learning_rate") if k in obj and _plain_number(obj[k])}
    model = obj.get("model")
    if isinstance(model, StandIn):
        return _from_stand_in(model, label, info)
    if isinstance(model, Mapping):
        config, sd, folded = convert_state_dict(model, label=label)
        return NvidiaImport("nvidia-state-dict", config, sd, folded, info)
    if "state_dict" in obj:
        sd_in = obj["state_dict"]
        if not isinstance(sd_in, Mapping):
            raise CheckpointError(f"{label}: 'state_dict' is a {type(sd_in).__name__}, expected a mapping")
        cfg = obj.get("config")
        every, size = _dle_schedule(cfg, label)
        config, sd, folded = convert_state_dict(sd_in, n_early_every=every, n_early_size=size, label=label)
        _check_dle_config(cfg, config, label)
        return NvidiaImport("nvidia-dle", config, sd, folded, info)
    if any(isinstance(k, str) and k.endswith("upsample.weight") for k in obj):
        config, sd, folded = convert_state_dict(obj, label=label)
        return NvidiaImport("nvidia-state-dict", config, sd, folded, {})
    keys = sorted(str(k) for k in obj)[:8]
    raise CheckpointError(f"{label}: not an NVIDIA WaveGlow checkpoint (top-level keys {keys})")


def import_nvidia(
    src: str | Path | bytes | CheckpointSource, map_location: MapLocation = "cpu"
) -> NvidiaImport:
    """Read an NVIDIA checkpoint (any of the three layouts, optionally xz-compressed).

    Files that need pickled classes go through the allow list; code in the file never runs, and a
    file asking for anything else raises :class:`UnsafeCheckpointError`. Every other failure is a
    :class:`~waveflow.errors.CheckpointError` too: an unreadable file, a "bomb" (see
    :func:`max_checkpoint_bytes`), tensors that disagree with one another, non-finite weights.
    Zip files are previewed on the meta device first, so their declared shapes are checked
    before any tensor is read.
    """
    source = CheckpointSource.from_any(src)
    previewed = preview(source)
    if previewed is not None:  # shapes and config checked before any tensor is read
        convert_loaded(previewed[0], source.label)
    obj, _ = load_any(source, map_location, allow_list=previewed[1] if previewed else None)
    return convert_loaded(obj, source.label)


def load_nvidia_checkpoint(
    path_or_bytes: str | Path | bytes, map_location: MapLocation = "cpu"
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """An NVIDIA WaveGlow checkpoint -> ``(ModelConfig, state_dict)`` for :class:`waveflow.model.WaveGlow`.

    ``WaveGlow(config).load_state_dict(state_dict)`` (strict) works for every layout. When the file
    held weight-norm-folded weights, ``config.weight_norm`` is false. NVIDIA files carry no mel
    settings; pair the config with ``waveflow.presets.tacotron2_mel()`` (their convention).
    """
    result = import_nvidia(path_or_bytes, map_location)
    return result.config, result.state_dict


# -- waveflow -> NVIDIA --------------------------------------------------------------------------
def to_nvidia_state_dict(model: torch.nn.Module, layout: str = "original") -> OrderedDict[str, Tensor]:
    """The weights of a waveflow ``WaveGlow`` with NVIDIA's key names.

    ``layout="original"``: ``glow.WaveGlow().state_dict()`` of NVIDIA/waveglow (fused
    ``cond_layer``); ``"dle"``: DeepLearningExamples' ``WaveGlow`` (per-layer ``cond_layers``, no
    ``module.`` prefix). With weight norm the convolutions get ``weight_g``/``weight_v``; a model
    whose weight norm was folded gives plain ``weight`` tensors (NVIDIA's ``remove_weightnorm``
    layout). NVIDIA's class hard-codes the upsampler (kernel 1024, stride 256), 1x1 mixing, affine
    couplings on the second half and no ActNorm; other configurations raise ``ValueError``.
    """
    if layout not in ("original", "dle"):
        raise ValueError(f"layout must be 'original' or 'dle', got {layout!r}")
    cfg: ModelConfig = model.config  # type: ignore[assignment]
    unsupported = {
        "mixing": (cfg.mixing, "conv1x1"),
        "coupling": (cfg.coupling, "affine"),
        "actnorm": (cfg.actnorm, False),
        "alternate_halves": (cfg.alternate_halves, False),
        "log_scale_clamp": (cfg.log_scale_clamp, None),
        "hop_length": (cfg.hop_length, NVIDIA_HOP_LENGTH),
        "upsample_kernel_size": (cfg.upsample_kernel_size, 1024),
    }
    bad = {k: v for k, (v, want) in unsupported.items() if v != want}
    if bad:
        raise ValueError(f"NVIDIA's WaveGlow class cannot hold this model: {bad}")
    src = model.state_dict()
    out: OrderedDict[str, Tensor] = OrderedDict()
    out["upsample.weight"] = src["upsample.conv.weight"]
    out["upsample.bias"] = src["upsample.conv.bias"]
    n_layers, c = cfg.wavenet.n_layers, cfg.wavenet.n_channels

    def conv(dst: str, src_prefix: str, rows: slice | None = None) -> None:
        names = {"bias": "bias"}
        if f"{src_prefix}.parametrizations.weight.original0" in src:
            names.update(
                {
                    "weight_g": "parametrizations.weight.original0",
                    "weight_v": "parametrizations.weight.original1",
                }
            )
        else:
            names["weight"] = "weight"
        for nv_name, wf_name in names.items():
            t = src[f"{src_prefix}.{wf_name}"]
            out[f"{dst}.{nv_name}"] = t if rows is None else t[rows]

    for k in range(cfg.n_flows):
        wf = f"flow.steps.{k}.coupling.conditioner"
        nv = f"WN.{k}"
        # NVIDIA's registration order: in_layers, res_skip_layers, (cond_layers), start, end, (cond_layer).
        for i in range(n_layers):
            conv(f"{nv}.in_layers.{i}", f"{wf}.in_layers.{i}")
        for i in range(n_layers):
            conv(f"{nv}.res_skip_layers.{i}", f"{wf}.res_skip_layers.{i}")
        if layout == "dle":
            for i in range(n_layers):
                conv(f"{nv}.cond_layers.{i}", f"{wf}.cond_layer", slice(2 * c * i, 2 * c * (i + 1)))
        conv(f"{nv}.start", f"{wf}.start")
        out[f"{nv}.end.weight"] = src[f"{wf}.end.weight"]
        out[f"{nv}.end.bias"] = src[f"{wf}.end.bias"]
        if layout == "original":
            conv(f"{nv}.cond_layer", f"{wf}.cond_layer")
    for k in range(cfg.n_flows):
        out[f"convinv.{k}.conv.weight"] = src[f"flow.steps.{k}.mix.weight"].unsqueeze(
            -1
        )  # (c, c) -> (c, c, 1)
    return out
