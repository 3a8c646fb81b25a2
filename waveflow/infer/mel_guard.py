"""Mel conventions: exact converters between them, and a guard that recognises the wrong one.

A vocoder only works on the mel it was trained on, and "my TTS mel through your vocoder sounds
like noise" is the most common complaint about every open vocoder. The toolkits disagree on:

* the log: natural log (NVIDIA Tacotron2/WaveGlow, HiFi-GAN, SpeechBrain, torchaudio, Coqui's
  LJSpeech recipes) or ``log10`` (ESPnet, ParallelWaveGAN), or decibels (Coqui's default);
* the floor under the log: ``1e-5`` (NVIDIA), ``1e-10`` (ESPnet/PWG), ``1e-8`` (Coqui recipes);
* normalisation after the log: none, global mean/variance with dataset statistics (ESPnet/PWG
  ``feats``), or Coqui's range normalisation of dB values to ``[-4, 4]``;
* the layout: channel-major ``(n_mels, frames)`` or time-major ``(frames, n_mels)`` (ESPnet/PWG;
  transposing is the caller's job, see :func:`describe_n_mels_mismatch`).

Exact converters (up to float rounding):

* log base: ``ln x = ln(10) * log10 x`` (:func:`convert_log_mel`);
* floor: re-clamping at a *higher* floor is exact, because ``max(max(x, a), b) = max(x, b)`` for
  ``a <= b``; a lower floor cannot be recovered (:func:`convert_log_mel` refuses it);
* mean/variance normalisation, given the statistics (:func:`denormalize`, :func:`load_mvn_stats`);
* decibels: ``log10 x = (dB + ref_level_db) / 20`` (:func:`db_to_log`);
* Coqui's range normalisation inside its clipping range (:func:`coqui_denormalize`).

What cannot be converted: a different STFT, sample rate, band (ESPnet's 80-7600 Hz against
NVIDIA's 0-8000 Hz), filterbank or centring. Those must match at training time.

:func:`check_mel_statistics` looks at the values of a mel and returns warnings naming the most
likely convention when they do not fit the vocoder's; :class:`~waveflow.infer.vocoder.Vocoder`
issues them as one :class:`MelConventionWarning` per call.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from waveflow.audio.features import convert_log_base
from waveflow.config import MelConfig

LogBase = Literal["ln", "log10"]

# Fewer values than this at one minimum do not count as a floor: a single frame of speech has
# 80 distinct values, one of which is always the minimum.
_MIN_FLOOR_COUNT = 8
_MIN_FLOOR_FRACTION = 0.005
_FLOOR_ATOL = 1e-3
# Largest plausible log-mel of real speech (|x| at most a few hundred before the log, Slaney-normalised
# filters): values beyond this are decibels, not a log of magnitudes.
_MAX_LOG_VALUE = 12.0
_MIN_LOG_VALUE = -30.0
_MAX_STAT_VALUES = 1_000_000
# The range heuristics (no floor visible) need enough frames: a short stretch of speech has a small
# spread in any log base.
MIN_FRAMES_FOR_RANGE = 100


class MelConventionWarning(UserWarning):
    """A mel's values look like another convention than the vocoder's."""


@dataclass(frozen=True)
class KnownFloor:
    """A log floor used by some toolkit: its value after the log, and what to call it."""

    log: LogBase
    floor: float
    name: str

    @property
    def value(self) -> float:
        return math.log(self.floor) if self.log == "ln" else math.log10(self.floor)


KNOWN_FLOORS = (
    KnownFloor("ln", 1e-5, "NVIDIA Tacotron2/WaveGlow, HiFi-GAN, SpeechBrain, torchaudio"),
    KnownFloor("log10", 1e-10, "ESPnet/ParallelWaveGAN before mean/variance normalisation"),
    KnownFloor("ln", 1e-8, "Coqui TTS LJSpeech recipes"),
    KnownFloor("log10", 1e-5, "log10 with a 1e-5 floor"),
    KnownFloor("ln", 1e-10, "natural log with a 1e-10 floor"),
)

_BASE_NAME = {"ln": "natural log", "log10": "log10"}


@dataclass(frozen=True)
class MelStatistics:
    """Summary of a mel's values (over every bin and frame)."""

    minimum: float
    maximum: float
    mean: float
    std: float
    p01: float
    p99: float
    count_at_minimum: int
    num_values: int

    @property
    def floor(self) -> float | None:
        """The minimum, if enough values sit exactly on it to call it a clamping floor."""
        enough = max(_MIN_FLOOR_COUNT, _MIN_FLOOR_FRACTION * self.num_values)
        return self.minimum if self.count_at_minimum >= enough else None

    @property
    def spread(self) -> float:
        """``p99 - p01``: the dynamic range of the bulk of the values."""
        return self.p99 - self.p01


@dataclass(frozen=True)
class MelDiagnosis:
    """The most likely convention of a mel.

    ``kind``: ``"log"`` (a log-mel; ``log``/``floor`` set when a known floor was recognised),
    ``"mvn"`` (mean/variance normalised), ``"coqui_range"`` (Coqui's ``[-4, 4]``), ``"db"``
    (decibels), ``"unit_range"`` (values in ``[0, 1]``), ``"linear"`` (no log at all).
    """

    kind: Literal["log", "mvn", "coqui_range", "db", "unit_range", "linear"]
    description: str
    stats: MelStatistics
    log: LogBase | None = None
    floor: float | None = None


# -- statistics and recognition -------------------------------------------------------------------
def mel_statistics(mel: Tensor | np.ndarray) -> MelStatistics:
    """Statistics of all values of ``mel`` (any shape). Large mels are subsampled evenly."""
    values = torch.as_tensor(mel).detach().reshape(-1).to("cpu", torch.float64)  # (N,)
    if values.numel() == 0:
        raise ValueError("mel is empty")
    if not torch.isfinite(values).all():
        raise ValueError("mel contains NaN or Inf")
    minimum = float(values.min())
    count_at_minimum = int((values <= minimum + _FLOOR_ATOL).sum())
    num_values = values.numel()
    if num_values > _MAX_STAT_VALUES:
        # Quantiles of an even subsample: torch.quantile refuses very large inputs.
        values = values[:: math.ceil(num_values / _MAX_STAT_VALUES)]
    p01, p99 = torch.quantile(values, torch.tensor([0.01, 0.99], dtype=torch.float64)).tolist()
    return MelStatistics(
        minimum=minimum,
        maximum=float(values.max()),
        mean=float(values.mean()),
        std=float(values.std()) if values.numel() > 1 else 0.0,
        p01=p01,
        p99=p99,
        count_at_minimum=count_at_minimum,
        num_values=num_values,
    )


def _known_floor(value: float) -> KnownFloor | None:
    for known in KNOWN_FLOORS:
        if abs(value - known.value) <= 0.02:
            return known
    return None


def guess_mel_convention(mel: Tensor | np.ndarray) -> MelDiagnosis:
    """Name the most likely convention of ``mel`` from its values alone (a heuristic).

    Rules, in order: no negative values -> linear or ``[0, 1]``-normalised; values far beyond any
    log-mel -> decibels; a floor at exactly -4 with nothing above 4 -> Coqui's range normalisation;
    mean near 0 with unit variance -> mean/variance normalised; otherwise a log-mel, whose base and
    floor are recognised when many values sit on a known floor (``ln 1e-5 = -11.51``,
    ``log10 1e-10 = -10``, ``ln 1e-8 = -18.42``, ...).
    """
    s = mel_statistics(mel)
    if s.minimum >= 0.0:
        if s.maximum <= 1.0:
            return MelDiagnosis(
                "unit_range", "values in [0, 1] (a [0, 1]-normalised dB mel, e.g. torchaudio's WaveRNN)", s
            )
        return MelDiagnosis(
            "linear", "non-negative values: a linear magnitude or power mel, not log-compressed", s
        )
    if s.minimum < _MIN_LOG_VALUE or s.maximum > _MAX_LOG_VALUE:
        return MelDiagnosis(
            "db", f"values from {s.minimum:.1f} to {s.maximum:.1f}: decibels (20*log10, e.g. Coqui TTS)", s
        )
    if s.floor is not None and abs(s.floor + 4.0) <= _FLOOR_ATOL and s.maximum <= 4.0 + _FLOOR_ATOL:
        return MelDiagnosis("coqui_range", "dB range-normalised to [-4, 4] (Coqui TTS's default)", s)
    if abs(s.mean) < 0.5 and 0.6 < s.std < 1.6 and s.minimum > -6.0 and s.maximum < 6.0:
        return MelDiagnosis(
            "mvn",
            f"mean {s.mean:.2f} and standard deviation {s.std:.2f}: mean/variance-normalised features "
            f"(ESPnet/ParallelWaveGAN 'feats', or another normalised mel)",
            s,
        )
    if s.floor is not None:
        known = _known_floor(s.floor)
        if known is not None:
            return MelDiagnosis(
                "log",
                f"{_BASE_NAME[known.log]} with floor {known.floor:g} (silence at {known.value:.2f}; {known.name})",
                s,
                log=known.log,
                floor=known.floor,
            )
        return MelDiagnosis(
            "log", f"a log-mel clamped at {s.floor:.2f} (not a floor any known toolkit uses)", s
        )
    return MelDiagnosis(
        "log", f"a log-mel from {s.minimum:.2f} to {s.maximum:.2f} (no clamping floor visible)", s
    )


def describe_band(mel_config: MelConfig) -> str:
    f_max = mel_config.f_max if mel_config.f_max is not None else mel_config.sample_rate / 2
    return f"{mel_config.f_min:g}-{f_max:g} Hz"


def describe_convention(mel_config: MelConfig) -> str:
    """Human description of the values a vocoder trained on ``mel_config`` expects."""
    floor_value = _log(mel_config.log_floor, mel_config.log)
    return (
        f"{_BASE_NAME[mel_config.log]} with floor {mel_config.log_floor:g} (silence at {floor_value:.2f}), "
        f"{describe_band(mel_config)}"
    )


def _log(x: float, base: LogBase) -> float:
    return math.log(x) if base == "ln" else math.log10(x)


def _fix_for_log(diagnosis: MelDiagnosis, mel_config: MelConfig) -> str:
    if diagnosis.floor > mel_config.log_floor:
        return (
            f"its floor {diagnosis.floor:g} is above the vocoder's {mel_config.log_floor:g}, so the quietest parts "
            f"were clipped and no exact conversion exists (waveflow.audio.features.convert_log_base changes the "
            f"base only)"
        )
    return (
        f"convert it with waveflow.infer.mel_guard.convert_log_mel(mel, from_log={diagnosis.log!r}, "
        f"from_floor={diagnosis.floor:g}, to=vocoder.mel_config) (exact for the log base and floor; "
        f"the band {describe_band(mel_config)} and the STFT must match as well)"
    )


def check_mel_statistics(mel: Tensor | np.ndarray, mel_config: MelConfig) -> list[str]:
    """Warnings (possibly none) when ``mel``'s values do not fit ``mel_config``'s convention.

    Each warning names what the values look like, what the vocoder expects and how to convert
    where that is exact. It is a heuristic on the values only: a mel that passes can still come
    from a different STFT or band. Without a visible floor, a mel's range is only judged from
    ``MIN_FRAMES_FOR_RANGE`` frames on.
    """
    d = guess_mel_convention(mel)
    s = d.stats
    num_frames = s.num_values // mel_config.n_mels
    expected = describe_convention(mel_config)
    target_floor = _log(mel_config.log_floor, mel_config.log)
    intro = f"the mel looks like {d.description}, but this vocoder expects {expected}"
    if d.kind == "mvn":
        return [
            f"{intro}; undo the normalisation with the dataset statistics "
            f"(waveflow.infer.mel_guard.load_mvn_stats and denormalize), then convert_log_mel"
        ]
    if d.kind == "coqui_range":
        return [f"{intro}; undo it with mel_guard.coqui_denormalize, then mel_guard.db_to_log"]
    if d.kind == "db":
        return [
            f"{intro}; convert it with mel_guard.db_to_log (and coqui_denormalize first if it was normalised)"
        ]
    if d.kind in ("unit_range", "linear"):
        return [f"{intro}; a log-mel is required (log of max(x, {mel_config.log_floor:g}) for a linear mel)"]
    if d.log is not None and d.floor is not None:
        if d.log == mel_config.log and math.isclose(d.floor, mel_config.log_floor, rel_tol=1e-2):
            return []
        return [f"{intro}; {_fix_for_log(d, mel_config)}"]
    # A log-mel without a recognisable floor: compare its range with the expected one.
    if s.floor is not None and abs(s.floor - target_floor) > 0.05:
        return [f"{intro}; values are clamped at {s.floor:.2f} instead of {target_floor:.2f}"]
    if num_frames < MIN_FRAMES_FOR_RANGE:
        return []
    if s.minimum < target_floor - 1.5:
        return [
            f"{intro}; values go down to {s.minimum:.2f}, well below the floor {target_floor:.2f} the "
            f"vocoder was trained with"
        ]
    ln10 = math.log(10.0)
    if mel_config.log == "ln" and s.spread < 4.5 and s.maximum < 1.5:
        return [
            f"{intro}; its values span only {s.spread:.1f} (1st to 99th percentile), about 1/{ln10:.2f} of a "
            f"natural-log mel of speech: it may be log10 (ESPnet/ParallelWaveGAN); convert_log_mel converts it"
        ]
    if mel_config.log == "log10" and s.spread > 9.0 and s.minimum < -10.5:
        return [
            f"{intro}; its values span {s.spread:.1f}, more than a log10 mel of speech: it may be natural log"
        ]
    return []


# -- shape hints ----------------------------------------------------------------------------------
def describe_n_mels_mismatch(shape: tuple[int, ...], mel_config: MelConfig) -> str:
    """Why a mel of ``shape`` does not fit a vocoder with ``mel_config.n_mels`` bins, and what it may be."""
    n_mels = mel_config.n_mels
    message = f"mel has shape {tuple(shape)}: expected (n_mels={n_mels}, frames) or (B, {n_mels}, frames)"
    if len(shape) >= 2 and shape[-1] == n_mels:
        return f"{message}; it looks time-major (frames, n_mels) as ESPnet/ParallelWaveGAN store it: transpose the last two axes"
    bins = shape[-2] if len(shape) >= 2 else shape[-1]
    if bins == mel_config.n_fft // 2 + 1:
        return f"{message}; {bins} = n_fft/2 + 1 bins is a linear-frequency spectrogram, not a mel"
    return f"{message}; a {bins}-bin mel comes from a different front end than this vocoder's ({describe_convention(mel_config)})"


# -- exact converters -----------------------------------------------------------------------------
def convert_log_mel(mel: Tensor, from_log: LogBase, from_floor: float, to: MelConfig) -> Tensor:
    """Re-express a log-mel in ``to``'s log base and floor: ``(..., n_mels, frames)`` -> same shape.

    The base change is a constant factor; re-clamping at ``to.log_floor`` is exact when
    ``from_floor <= to.log_floor`` (a higher source floor has already discarded the values between
    the two floors, so that direction raises ``ValueError``).
    """
    if from_log not in ("ln", "log10"):
        raise ValueError(f"from_log must be 'ln' or 'log10', got {from_log!r}")
    if not from_floor > 0:
        raise ValueError(f"from_floor must be positive, got {from_floor}")
    if from_floor > to.log_floor * (1 + 1e-9):
        raise ValueError(
            f"cannot lower the floor from {from_floor:g} to {to.log_floor:g}: values below {from_floor:g} are lost"
        )
    converted = convert_log_base(mel, from_log, to.log)
    return converted.clamp(min=_log(to.log_floor, to.log))


def normalize(mel: Tensor, mean: Tensor | np.ndarray, scale: Tensor | np.ndarray) -> Tensor:
    """Global mean/variance normalisation: ``(mel - mean) / scale`` per bin; ``mel`` ``(..., n_mels, frames)``."""
    mean_t, scale_t = _stats_like(mel, mean, scale)
    return (mel - mean_t) / scale_t


def denormalize(mel: Tensor, mean: Tensor | np.ndarray, scale: Tensor | np.ndarray) -> Tensor:
    """Undo :func:`normalize`: ``mel * scale + mean`` per bin (ESPnet ``feat_gen`` -> ``feat_gen_denorm``)."""
    mean_t, scale_t = _stats_like(mel, mean, scale)
    return mel * scale_t + mean_t


def _stats_like(mel: Tensor, mean: Tensor | np.ndarray, scale: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    n_mels = mel.shape[-2] if mel.dim() >= 2 else -1
    out = []
    for name, value in (("mean", mean), ("scale", scale)):
        t = torch.as_tensor(value).to(device=mel.device, dtype=mel.dtype).reshape(-1)
        if t.numel() != n_mels:
            raise ValueError(
                f"{name} has {t.numel()} values but the mel has {n_mels} bins (shape {tuple(mel.shape)})"
            )
        out.append(t[:, None])  # (n_mels,) -> (n_mels, 1): broadcast over frames
    if not bool((out[1] > 0).all()):
        raise ValueError("scale must be positive in every bin")
    return out[0], out[1]


def load_mvn_stats(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read mean/variance statistics -> ``(mean, scale)``, float64 ``(n_mels,)`` each.

    Formats: ESPnet's ``feats_stats.npz`` (``count``, ``sum``, ``sum_square``; scale = population
    standard deviation, as ESPnet's ``GlobalMVN``), an ``.npz`` with ``mean`` and ``scale``,
    ParallelWaveGAN's ``stats.npy`` (``(2, n_mels)``: mean, scale) or ``stats.h5`` (datasets
    ``mean``/``scale``; needs h5py), or Kaldi's global CMVN statistics (``cmvn.ark``/``.mat`` from
    ``compute-cmvn-stats``, text or binary, with or without an archive key: a ``2 x (n_mels + 1)``
    matrix of per-bin sums and the count, then per-bin sums of squares; scale as ESPnet's).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.keys())
            if {"count", "sum", "sum_square"} <= keys:
                count = float(np.asarray(data["count"]).reshape(-1)[0])
                mean = np.asarray(data["sum"], dtype=np.float64) / count
                var = np.asarray(data["sum_square"], dtype=np.float64) / count - mean**2
                scale = np.sqrt(np.maximum(var, 1e-20))
            elif {"mean", "scale"} <= keys:
                mean, scale = np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64)
            else:
                raise ValueError(f"{path} holds {sorted(keys)}; expected count/sum/sum_square or mean/scale")
    elif suffix == ".npy":
        stats = np.load(path, allow_pickle=False).astype(np.float64)
        if stats.ndim != 2 or stats.shape[0] != 2:
            raise ValueError(f"{path} has shape {stats.shape}; expected (2, n_mels): mean and scale")
        mean, scale = stats[0], stats[1]
    elif suffix in (".ark", ".mat"):
        mean, scale = _kaldi_cmvn(_read_kaldi_matrix(path), path)
    elif suffix in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError:
            raise ValueError(f"reading {path} needs h5py: pip install 'waveflow[stats]'") from None
        with h5py.File(path, "r") as f:
            mean, scale = np.asarray(f["mean"], np.float64), np.asarray(f["scale"], np.float64)
    else:
        raise ValueError(
            f"{path}: unknown statistics format {suffix!r} (expected .npz, .npy, .h5 or Kaldi .ark/.mat)"
        )
    if mean.shape != scale.shape or mean.ndim != 1:
        raise ValueError(f"{path}: mean {mean.shape} and scale {scale.shape} must be equal 1-D shapes")
    return mean, scale


_KALDI_MAX_BYTES = 64 * 2**20  # statistics are a few kB; refuse to read anything huge


def _read_kaldi_matrix(path: Path) -> np.ndarray:
    """One Kaldi matrix from ``path`` (float64): binary (``\\0B`` + ``FM ``/``DM `` + rows + columns +
    row-major data, little-endian) or text (``[ a b ... ]``, rows on lines), optionally after an
    archive key (``global [ ...`` or ``key \\0B...``). Compressed matrices are refused."""
    size = path.stat().st_size
    if size > _KALDI_MAX_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a statistics matrix")
    data = path.read_bytes()
    binary = data.find(b"\0B")
    bracket = data.find(b"[")
    if binary != -1 and (bracket == -1 or binary < bracket):
        pos = binary + 2
        token = data[pos : pos + 3]
        if token not in (b"FM ", b"DM "):
            kind = token.decode("latin-1").strip() or "?"
            raise ValueError(
                f"{path}: Kaldi matrix type {kind!r} is not supported (only FM and DM, uncompressed)"
            )
        pos += 3
        dims = []
        for _ in range(2):
            if data[pos : pos + 1] != b"\x04" or len(data) < pos + 5:
                raise ValueError(f"{path}: truncated Kaldi matrix header")
            dims.append(int(np.frombuffer(data, dtype="<i4", count=1, offset=pos + 1)[0]))
            pos += 5
        rows, cols = dims
        dtype = np.dtype("<f4" if token == b"FM " else "<f8")
        if rows < 0 or cols < 0 or rows * cols * dtype.itemsize > len(data) - pos:
            raise ValueError(f"{path}: Kaldi matrix header declares {rows} x {cols} but the file is shorter")
        values = np.frombuffer(data, dtype=dtype, count=rows * cols, offset=pos)
        return values.reshape(rows, cols).astype(np.float64)
    if bracket == -1:
        raise ValueError(f"{path}: not a Kaldi matrix (no binary header and no '[')")
    end = data.find(b"]", bracket)
    if end == -1:
        raise ValueError(f"{path}: Kaldi text matrix has no closing ']'")
    lines = [line.split() for line in data[bracket + 1 : end].decode("ascii", "replace").splitlines()]
    rows_text = [line for line in lines if line]
    try:
        matrix = np.array([[float(v) for v in line] for line in rows_text], dtype=np.float64)
    except ValueError:
        raise ValueError(
            f"{path}: Kaldi text matrix holds something other than numbers or ragged rows"
        ) from None
    return matrix


def _kaldi_cmvn(stats: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's global CMVN accumulators ``(2, n + 1)`` -> ``(mean, scale)`` ``(n,)``."""
    if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] < 2:
        raise ValueError(f"{path}: Kaldi CMVN statistics must be 2 x (n_mels + 1), got {stats.shape}")
    count = stats[0, -1]
    if not count > 0:
        raise ValueError(f"{path}: Kaldi CMVN statistics have count {count}; expected > 0")
    mean = stats[0, :-1] / count
    var = stats[1, :-1] / count - mean**2
    return mean, np.sqrt(np.maximum(var, 1e-20))


def db_to_log(mel_db: Tensor, to_log: LogBase, ref_level_db: float = 0.0) -> Tensor:
    """Decibels ``20 * log10(x) - ref_level_db`` -> ``ln x`` or ``log10 x`` (exact)."""
    log10 = (mel_db + ref_level_db) / 20.0
    return convert_log_base(log10, "log10", to_log)


def coqui_denormalize(
    mel: Tensor, *, max_norm: float = 4.0, min_level_db: float = -100.0, symmetric: bool = True
) -> Tensor:
    """Undo Coqui TTS's range normalisation -> dB relative to ``ref_level_db``.

    Coqui maps ``S`` (dB minus ``ref_level_db``) to ``2 * max_norm * (S - min_level_db) /
    -min_level_db - max_norm`` (symmetric) or ``max_norm * (S - min_level_db) / -min_level_db``, then
    clips. The inverse is exact inside the clipping range; clipped values come back at its edge.
    Follow with ``db_to_log(..., ref_level_db=ref_level_db)`` (Coqui's default ``ref_level_db`` is 20).
    """
    if max_norm <= 0 or min_level_db >= 0:
        raise ValueError(f"need max_norm > 0 and min_level_db < 0, got {max_norm}, {min_level_db}")
    unit = (mel + max_norm) / (2 * max_norm) if symmetric else mel / max_norm  # in [0, 1]
    return unit * -min_level_db + min_level_db
