"""Self-describing checkpoints: one file holds everything needed to rebuild the vocoder.

Layout (a dict written with ``torch.save``, read back with ``torch.load(weights_only=True)``)::

    format              "waveflow"
    format_version      FORMAT_VERSION (readers refuse newer versions)
    waveflow_version    the package version that wrote it
    config              VocoderConfig.to_dict(): the model *and* the mel convention it was trained on
    state_dict          the model's tensors, as the model held them
    weight_norm_folded  True if weight norm had been folded into plain weights before saving
    training_state      optional: optimizer, scaler, scheduler, step, RNG states (tensors, numbers,
                        strings, lists, dicts only)
    metadata            optional free-form dict (same restriction)

No module objects are pickled, so loading never runs code from the file. Writes are atomic: the
checkpoint goes to a temporary file in the same directory, which is flushed, fsync'ed and renamed
over the target; an interrupted write leaves any previous file untouched.

:func:`read_checkpoint` and :func:`load_model` also accept NVIDIA checkpoints (their layouts and
key mapping: :mod:`waveflow.interop.nvidia`); :func:`nvidia_checkpoint` makes them a vocoder.

Every load goes through the safe reader (:mod:`waveflow.safe_load`) and raises
:class:`waveflow.errors.CheckpointError` (a ``ValueError``) naming the file and the cause: unreadable
or truncated; a pickle asking for a global outside the allow list (named); a "bomb" that would
expand beyond ``$WAVEFLOW_MAX_CHECKPOINT_BYTES`` (default 1 GiB) or declares tensors larger than it
stores; tensors that do not fit the stored config (each named, expected vs found shape; zip files
are checked on the meta device before their tensors are read); non-finite (NaN/Inf) weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from waveflow import __version__, presets
from waveflow.config import MelConfig, VocoderConfig
from waveflow.errors import CheckpointError, InputError
from waveflow.fileio import atomic_write
from waveflow.interop import nvidia
from waveflow.model import WaveGlow
from waveflow.safe_load import MapLocation, check_finite, check_state_dict_fits, convert_hint, read_checked

FORMAT_NAME = "waveflow"
FORMAT_VERSION = 1

_LEAF_TYPES = (Tensor, bool, int, float, complex, str, bytes, type(None), torch.device, torch.dtype)


class MelMismatchError(InputError):
    """The mel settings given for an NVIDIA file (which has none) do not fit its model."""


@dataclass
class Checkpoint:
    """The contents of a waveflow checkpoint file."""

    config: VocoderConfig
    state_dict: dict[str, Tensor]
    training_state: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    waveflow_version: str = __version__
    weight_norm_folded: bool = False
    path: Path | None = None
    source_format: str = FORMAT_NAME  # or "nvidia-original", "nvidia-dle", "nvidia-state-dict"

    def build_model(self, fold_weight_norm: bool = False) -> WaveGlow:
        """A :class:`WaveGlow` with these weights, in eval mode, on the CPU.

        ``fold_weight_norm``: with weight normalisation folded into plain weights (faster
        inference, same outputs), which are checked to be finite too.
        """
        label = str(self.path or "checkpoint")
        # Checked before the model is built: a config can declare a huge model on its own.
        check_state_dict_fits(self.config.model, self.state_dict, self.weight_norm_folded, label)
        model = WaveGlow(self.config.model)
        if self.weight_norm_folded:
            model.remove_weight_norm()
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:400]
            raise CheckpointError(f"{label}: the weights do not fit the stored config: {detail}") from None
        if fold_weight_norm:
            model.remove_weight_norm()
            # g * v / |v| is NaN for an all-zero row of v: the folded weights must be finite too.
            check_finite(model.state_dict(), f"{label} (with weight norm folded)")
        return model.eval()

    @property
    def training_step(self) -> int | None:
        """The optimizer step a training checkpoint was saved at (NVIDIA files: their iteration)."""
        state = self.training_state or {}
        trainer = state.get("trainer")
        for step in (trainer.get("step") if isinstance(trainer, Mapping) else None, state.get("step")):
            if isinstance(step, Tensor) and step.numel() == 1:
                step = step.item()
            if isinstance(step, int) and not isinstance(step, bool):
                return step
        iteration = self.metadata.get("iteration") if self.source_format != FORMAT_NAME else None
        return iteration if isinstance(iteration, int) and not isinstance(iteration, bool) else None


# -- saving --------------------------------------------------------------------------------------
def _check_weights_only(value: Any, where: str) -> None:
    """Raise ``ValueError`` if ``value`` could not be read back with ``weights_only=True``."""
    if isinstance(value, _LEAF_TYPES):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise ValueError(f"{where} has a key of type {type(k).__name__}; use strings or numbers")
            _check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            _check_weights_only(v, f"{where}[{i}]")
        return
    raise ValueError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a weights-only checkpoint "
        f"cannot hold; convert it to a tensor, number, string, list or dict"
    )


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"directory does not exist: {parent} (for checkpoint {path})")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint path is a directory: {path}")
    atomic_write(path, lambda handle: torch.save(obj, handle))
    return path


def _weight_norm_folded(model: WaveGlow) -> bool:
    if not model.config.weight_norm:
        return False
    return not any(".parametrizations.weight." in k for k in model.state_dict())


def save_checkpoint(
    path: str | Path,
    model: WaveGlow,
    mel_config: MelConfig,
    *,
    training_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (with its config and ``mel_config``) to ``path`` atomically; returns the path.

    ``training_state`` and ``metadata`` must hold only tensors, numbers, strings, ``None`` and
    lists/tuples/dicts of them (checked before anything is written), so that the file loads with
    ``weights_only=True``. Tensors are stored on the device they are on; load with
    ``map_location``.
    """
    config = VocoderConfig(model=model.config, mel=mel_config)
    config.validate()
    if training_state is not None:
        _check_weights_only(training_state, "training_state")
    _check_weights_only(metadata or {}, "metadata")
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "waveflow_version": __version__,
        "config": config.to_dict(),
        "state_dict": dict(model.state_dict()),
        "weight_norm_folded": _weight_norm_folded(model),
        "training_state": training_state,
        "metadata": dict(metadata or {}),
    }
    return atomic_torch_save(payload, path)


# -- loading -------------------------------------------------------------------------------------
def _parse(obj: Any, label: str, path: Path | None) -> Checkpoint:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{label} holds a {type(obj).__name__}, not a waveflow checkpoint")
    if obj.get("format") != FORMAT_NAME:
        if "state_dict" in obj or "model" in obj or any(str(k).endswith("upsample.weight") for k in obj):
            raise convert_hint(label, "an NVIDIA WaveGlow checkpoint (DeepLearningExamples or state dict)")
        raise CheckpointError(
            f"{label} is not a waveflow checkpoint (top-level keys {sorted(map(str, obj))[:8]})"
        )
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{label}: format_version is {version!r}, expected an integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{label} uses checkpoint format {version} (written by waveflow {obj.get('waveflow_version')}); "
            f"this waveflow {__version__} reads format <= {FORMAT_VERSION}. Upgrade waveflow."
        )
    try:
        config = VocoderConfig.from_dict(obj.get("config"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{label}: invalid config: {exc}") from None
    state_dict = obj.get("state_dict")
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{label}: state_dict is missing or holds non-tensor values")
    folded = obj.get("weight_norm_folded", False)
    if not isinstance(folded, bool):
        raise CheckpointError(f"{label}: weight_norm_folded is {folded!r}, expected true or false")
    check_state_dict_fits(config.model, state_dict, folded, label)
    check_finite(state_dict, label)
    training_state = obj.get("training_state")
    metadata = obj.get("metadata") or {}
    return Checkpoint(
        config=config,
        state_dict=dict(state_dict),
        training_state=dict(training_state) if isinstance(training_state, Mapping) else None,
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        format_version=version,
        waveflow_version=str(obj.get("waveflow_version", "?")),
        weight_norm_folded=folded,
        path=path,
    )


def load_checkpoint(path: str | Path, map_location: MapLocation = "cpu") -> Checkpoint:
    """Read a waveflow checkpoint (``torch.load(weights_only=True)``; xz-compressed files too).

    Raises ``FileNotFoundError`` for a missing file and :class:`~waveflow.errors.CheckpointError`
    (a ``ValueError``) naming the file when it is not a PyTorch file, is truncated or corrupt,
    pickles objects (the global is named), is a bomb, is an NVIDIA checkpoint (use
    :func:`load_model`, :func:`read_checkpoint` or ``waveflow convert``), was written by a newer
    format version, has an invalid config, tensors that do not fit it, or non-finite weights.
    """
    path = Path(path)
    return read_checked(path, lambda obj, label, _: _parse(obj, label, path), map_location, weights_only=True)


def nvidia_checkpoint(
    imported: nvidia.NvidiaImport,
    mel_config: MelConfig | None = None,
    *,
    path: Path | None = None,
    check_mel: bool = True,
) -> Checkpoint:
    """An NVIDIA file as a waveflow vocoder: the one place its model config meets a mel convention.

    ``imported``: what :func:`waveflow.interop.nvidia.import_nvidia` (or ``convert_loaded``) made of
    the file. ``build_model()`` of the result is the ready model; :func:`read_checkpoint`, so
    :func:`load_model` and ``waveflow convert``, come through here. NVIDIA files carry no mel settings:
    ``mel_config`` defaults to the Tacotron2 convention NVIDIA trained on, and is checked against
    the model (:class:`MelMismatchError`) unless ``check_mel`` is false.
    """
    config = VocoderConfig(model=imported.config, mel=mel_config or presets.tacotron2_mel())
    if check_mel:
        try:
            config.validate()
        except ValueError as exc:
            raise MelMismatchError(f"{path}: mel_config does not fit the NVIDIA model: {exc}") from None
    return Checkpoint(
        config=config,
        state_dict=imported.state_dict,
        metadata=dict(imported.info),
        path=path,
        source_format=imported.format,
    )


def read_checkpoint(
    path: str | Path,
    map_location: MapLocation = "cpu",
    *,
    nvidia_mel: MelConfig | None = None,
    check_mel: bool = True,
) -> Checkpoint:
    """Read any supported checkpoint, checked, without building the model.

    waveflow files as :func:`load_checkpoint`; NVIDIA files (see :func:`load_model`) come back
    with ``source_format`` naming their layout, their weights in waveflow's names, their
    ``iteration``/``epoch`` in ``metadata`` and the mel settings ``nvidia_mel`` (default: the
    Tacotron2 convention NVIDIA trained on; ``check_mel=False`` keeps them even when they do not
    fit the model, as ``inspect`` does to describe any file); waveflow files keep their own. Zip files are
    previewed on the meta device first: the shapes they declare are checked before any tensor is
    read. Failures raise :class:`~waveflow.errors.CheckpointError` naming the file and the cause.
    """
    path = Path(path)

    def interpret(obj: Any, label: str, previewing: bool) -> Checkpoint:
        if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
            return _parse(obj, label, path)
        imported = nvidia.convert_loaded(obj, label)  # the mel settings are checked once, after the weights
        return nvidia_checkpoint(imported, nvidia_mel, path=path, check_mel=check_mel and not previewing)

    return read_checked(path, interpret, map_location)


def load_model(
    path: str | Path,
    map_location: MapLocation = "cpu",
    *,
    fold_weight_norm: bool = False,
    mel_config: MelConfig | None = None,
) -> tuple[WaveGlow, VocoderConfig]:
    """Load any supported checkpoint as a ready :class:`WaveGlow` (eval mode) and its config.

    The format is detected: a waveflow checkpoint, an NVIDIA/waveglow training checkpoint (pickled
    ``glow.WaveGlow``, read through an allow list without running code from the file), a
    DeepLearningExamples/torch.hub checkpoint or a bare NVIDIA state dict; xz-compressed files are
    recognised by their magic bytes.

    NVIDIA files carry no mel settings: their model is assumed to take Tacotron2-convention mels
    (``presets.tacotron2_mel()``: 22050 Hz, 1024/256/1024, 80 Slaney mels 0-8000 Hz, natural log),
    which is what NVIDIA trained on; pass ``mel_config`` to override. A waveflow checkpoint knows
    its own mel settings and refuses ``mel_config``.

    ``fold_weight_norm``: fold weight normalisation into plain weights (faster inference, same
    outputs). The model is moved to ``map_location`` when that is a device or a device string.
    """
    ckpt = read_checkpoint(path, map_location, nvidia_mel=mel_config)
    if mel_config is not None and ckpt.source_format == FORMAT_NAME:
        raise InputError(
            f"{ckpt.path} is a waveflow checkpoint with its own mel settings; do not pass mel_config"
        )
    model = ckpt.build_model(fold_weight_norm)
    if isinstance(map_location, (str, torch.device)):
        model = model.to(map_location)
    return model, ckpt.config
