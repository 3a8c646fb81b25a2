"""The safe checkpoint reader: every checkpoint waveflow opens, its own or NVIDIA's, is read here.

Every failure is a :class:`~waveflow.errors.CheckpointError` naming the file, and refusal is cheap:

* **Format sniffing**: xz (by its magic bytes), torch zip archives (TorchScript refused), legacy
  pickle streams; anything else, empty or truncated is refused.
* **Bombs**: xz is decompressed incrementally, never past ``$WAVEFLOW_MAX_CHECKPOINT_BYTES``
  (default 1 GiB; refused at once when its index says so); a zip whose compressed records would
  expand beyond it is refused from its directory; no tensor may declare more data than the file
  stores for it; a config declaring a far larger model than its tensors is refused unbuilt.
* **Unpickling**: ``weights_only=True`` first, else an **allow-listing unpickler**: torch's tensor
  rebuilding and plain containers are resolved, NVIDIA WaveGlow's pickled module classes become
  inert :class:`StandIn` objects, and any other global raises :class:`UnsafeCheckpointError`
  naming it (torch's advice to use ``weights_only=False`` is never relayed). Files that must hold
  plain values only (waveflow's) get a refused pickle explained (:func:`explain_refusal`).
* **Weights**: checked against the model they must load into (expected vs found shapes, on the
  meta device before a zip file's tensors are read: :func:`read_checked`) and for NaN/Inf.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from waveflow.config import ModelConfig
from waveflow.errors import CheckpointError, InputError

XZ_MAGIC = b"\xfd7zXZ\x00"
ZIP_MAGIC = b"PK\x03\x04"

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


def _check_file(source: CheckpointSource) -> None:
    """Sniffs the format, and checks a zip checkpoint's directory before torch reads any record.

    torch.save writes a zip archive (torch >= 1.6) or a protocol-2 pickle stream (legacy); other
    files are refused. So are TorchScript archives (``torch.load`` would hand them to
    ``torch.jit.load``), archives Python's ``zipfile`` cannot read, and "zip bombs": records
    compressed to a fraction of the size they declare, whose expansion exceeds
    :func:`max_checkpoint_bytes` (torch stores its records uncompressed: its files never expand).
    """
    head = source.head(2)
    if not head:
        raise CheckpointError(f"{source.label} is empty, not a PyTorch checkpoint file")
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(f"{source.label} is not a PyTorch checkpoint file (starts with {head!r})")
    if not head.startswith(b"PK"):
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
def load_weights_only(
    source: CheckpointSource, map_location: MapLocation = "cpu", *, explain: bool = False
) -> Any:
    """``torch.load(weights_only=True)`` with errors turned into :class:`CheckpointError` naming the file.

    A refused pickle raises :class:`WeightsOnlyRefusal` (also a ``pickle.UnpicklingError``);
    callers decide what it means. ``explain``: the file must hold only plain values (a waveflow
    checkpoint), and a refusal raises :func:`explain_refusal`'s error instead. ``map_location="meta"``
    previews a zip file: every tensor gets its declared shape and no data is read.
    """
    _check_file(source)
    with source.open() as f:
        try:
            obj = torch.load(f, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            refusal = WeightsOnlyRefusal(source.label, exc)
            raise (explain_refusal(source, refusal) if explain else refusal) from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise _corrupt(source.label, exc) from None
    check_tensor_sizes(obj, source.label)
    return obj


def convert_hint(label: str, what: str) -> CheckpointError:
    """The error for an NVIDIA file read where a waveflow checkpoint was expected."""
    return CheckpointError(
        f"{label} is {what}, not a waveflow checkpoint; convert it with `waveflow convert {label} OUT.pt` "
        f"or load it with waveflow.checkpoint.load_model, which detects the format"
    )


def explain_refusal(source: CheckpointSource, refusal: WeightsOnlyRefusal) -> CheckpointError:
    """What a file is that a weights-only load refused: read it again through the allow list (on the meta device).

    A global outside the allow list raises :class:`UnsafeCheckpointError` naming it; pickled NVIDIA
    modules point to ``waveflow convert``; a pickle that the allow list cannot read either is corrupt.
    """
    try:
        obj = load_restricted(source, "meta")
    except CheckpointError as exc:  # unsafe (named) or corrupt
        return exc
    # The pickled module object (a stand-in): the file itself, or a value of its top-level dict.
    children = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (list, tuple)) else ()
    module = next((v for v in (obj, *children) if isinstance(v, StandIn)), None)
    name = module.nvidia_class if module is not None else refusal.global_name
    if name and name.rsplit(".", 1)[0].split(".")[-1] in ("glow", "glow_old", "model"):
        return convert_hint(source.label, f"an NVIDIA/waveglow training checkpoint (it pickles {name})")
    if name:
        return CheckpointError(
            f"{source.label} contains a pickled object ({name}); a waveflow checkpoint holds only tensors "
            f"and plain values, so it was not loaded"
        )
    return CheckpointError(f"{source.label}: not a waveflow checkpoint: {refusal.reason}")


def load_restricted(source: CheckpointSource, map_location: MapLocation = "cpu") -> Any:
    """Unpickle with the allow list: NVIDIA module objects come back as :class:`StandIn` objects."""
    _check_file(source)
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


def read_checked(
    src: str | Path | bytes | CheckpointSource,
    interpret: Callable[[Any, str, bool], Any],
    map_location: MapLocation = "cpu",
    *,
    weights_only: bool = False,
) -> Any:
    """Read a checkpoint and return ``interpret(obj, label, previewing)``, which checks what the file holds.

    A zip file is read twice: first on the meta device (``previewing`` true: declared shapes, no
    tensor data), so that ``interpret`` refuses tensors that do not fit before any is read, then
    for real. ``weights_only``: the file must hold only plain values (waveflow's format) and a
    refused pickle is explained; otherwise it is read again through the allow list (:func:`load_any`).
    """
    source = CheckpointSource.from_any(src)

    def load(location: MapLocation, allow_list: bool | None = None) -> tuple[Any, bool]:
        if weights_only:
            return load_weights_only(source, location, explain=True), False
        return load_any(source, location, allow_list=allow_list)

    allow_list = None
    if source.is_zip:
        previewed, allow_list = load("meta")
        interpret(previewed, source.label, True)
    return interpret(load(map_location, allow_list)[0], source.label, False)


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
            problems.append(f"{name(key)} is missing (expected shape {tuple(shape)})")
        elif tuple(state_dict[key].shape) != shape:
            problems.append(f"{name(key)} has shape {tuple(state_dict[key].shape)}, expected {tuple(shape)}")
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
