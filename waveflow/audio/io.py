"""Reading, resampling and writing audio files: the only module that touches audio on disk.

* :func:`load_audio` reads any format libsndfile knows (WAV, FLAC, OGG, ...) as float32 mono and
  resamples it with soxr (high quality) when asked for another rate.
* :func:`write_wav` writes 16-bit PCM atomically: a temporary file in the target folder is written,
  flushed to disk and renamed over the target, so a crash never leaves a half-written file.

Samples outside [-1, 1] are clipped before conversion to 16 bits and counted. NVIDIA's
``inference.py`` instead truncates ``audio * 32768`` with ``astype('int16')``, so an overshoot of
1.0 wraps around to -32768 (a loud click) and every sample is biased towards zero; clipping and
rounding avoid both and differ from NVIDIA's files by at most one step inside the range.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from waveflow.errors import InputError
from waveflow.fileio import atomic_write

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
_PCM16_SCALE = 32768.0  # int16 full scale; reading 16-bit PCM divides by the same number


def _check_rate(sample_rate: object) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")


# Resampling is refused from file rates outside this range: a header claiming 1 Hz would turn a
# second of samples into hours at 22 kHz (memory), one claiming 2 GHz into nothing.
MIN_RESAMPLE_RATE = 1000
MAX_RESAMPLE_RATE = 1_000_000
# A header's length is trusted up to this many samples (all channels; 256 MB of float32), or up to
# _MAX_SAMPLES_PER_BYTE per byte of file (a low-bitrate Opus stream holds ~64); a claim beyond both
# is decoded in blocks of _READ_BLOCK_SAMPLES instead of being allocated up front.
_TRUSTED_SAMPLES = 1 << 26
_MAX_SAMPLES_PER_BYTE = 64
_READ_BLOCK_SAMPLES = 1 << 22


def _check_audio_path(path: Path) -> None:
    """Missing, folder, FIFO/device (opening one may block forever) or empty: refused by name."""
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an audio file")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file (a FIFO, device or socket), not an audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")


def _unreadable(path: Path, exc: BaseException) -> InputError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return InputError(f"{path} is not a readable audio file: {detail}")


def _decode_mono(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` -> ``(audio (T,) float32 mono, rate)``.

    The frame count in a header is not blindly trusted: a FLAC header can declare 2**36 frames for
    a file of a few hundred bytes, and reading "the whole file" in one call allocates them all. A
    plausible length is read in one call (as ``soundfile.read`` does: seeking between blocks is
    inexact in MP3 streams); an implausible one block by block, until the decoder stops.
    """
    try:
        with sf.SoundFile(str(path)) as handle:
            rate, channels, declared = handle.samplerate, handle.channels, handle.frames
            if handle.seekable():
                handle.seek(0)  # as soundfile.read does (an MP3 decodes 1 ulp differently without it)
            claimed = declared * channels
            if claimed <= max(_TRUSTED_SAMPLES, _MAX_SAMPLES_PER_BYTE * path.stat().st_size):
                data = handle.read(dtype="float32", always_2d=True)  # (T, channels)
                blocks = (
                    [data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]] if len(data) else []
                )
            else:
                buffer = np.empty((max(1, _READ_BLOCK_SAMPLES // channels), channels), dtype=np.float32)
                blocks = []
                while True:
                    block = handle.read(out=buffer)  # (frames read, channels), a view of the buffer
                    if block.shape[0] == 0:
                        break
                    # Mono per block: the same numbers as averaging the whole file row by row.
                    blocks.append(
                        block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0].copy()
                    )
    except (sf.SoundFileError, RuntimeError) as exc:  # LibsndfileError, and errors while decoding
        raise _unreadable(path, exc) from exc
    if rate <= 0:
        raise InputError(f"{path} declares a sample rate of {rate} Hz")
    if not blocks:
        raise InputError(f"{path} contains no samples")
    return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), int(rate)


def resample_audio(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """``audio`` ``(T,)`` or ``(T, channels)`` from ``orig_rate`` to ``target_rate`` (soxr HQ, float32),
    the one resampler of the package (file loading, :meth:`Vocoder.mel <waveflow.infer.vocoder.Vocoder.mel>`)."""
    if orig_rate == target_rate:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio), int(orig_rate), int(target_rate), quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(
    path: str | os.PathLike[str], sample_rate: int | None = None, *, resample: bool = True
) -> tuple[np.ndarray, int]:
    """Read ``path`` -> ``(audio (T,) float32 mono, sample_rate)``.

    Integer PCM is scaled to [-1, 1) (``x / 32768`` for 16 bits); float files are returned as stored.
    Multi-channel audio is averaged to mono. If ``sample_rate`` is given and differs from the file's,
    the audio is resampled with soxr (HQ; the result may overshoot [-1, 1] slightly, as any band-limited
    resampler can) unless ``resample=False``, in which case a ValueError names both rates.

    Bad files raise :class:`~waveflow.errors.InputError` (a ``ValueError``) naming the file: not a
    regular file, empty, not audio, truncated, no samples, a file rate outside
    ``MIN_RESAMPLE_RATE``..``MAX_RESAMPLE_RATE`` when resampling, or too short to give a sample at
    the new rate. A missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    _check_audio_path(path)
    if sample_rate is not None:
        _check_rate(sample_rate)
    audio, file_rate = _decode_mono(path)
    if sample_rate is not None and sample_rate != file_rate:
        if not resample:
            raise InputError(
                f"{path} has sample rate {file_rate} Hz but {sample_rate} Hz is required (resampling is off)"
            )
        if not MIN_RESAMPLE_RATE <= file_rate <= MAX_RESAMPLE_RATE:
            raise InputError(
                f"{path} has sample rate {file_rate} Hz; resampling to {sample_rate} Hz is done only from "
                f"{MIN_RESAMPLE_RATE} to {MAX_RESAMPLE_RATE} Hz (is the header corrupt?)"
            )
        num_samples = audio.shape[0]
        audio = resample_audio(audio, file_rate, sample_rate)
        if audio.shape[0] == 0:
            raise InputError(
                f"{path}: {num_samples} sample(s) at {file_rate} Hz are too few to give one at {sample_rate} Hz"
            )
        file_rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(file_rate)


def audio_info(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(sample_rate, num_frames)`` of an audio file, read from its header without decoding it.

    Raises the same errors as :func:`load_audio` for missing, empty, unreadable or sample-less files.
    The frame count is the header's: a corrupt header can claim more frames than the file holds
    (:func:`load_audio` then returns what is there).
    """
    path = Path(path)
    _check_audio_path(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _unreadable(path, exc) from exc
    if info.frames <= 0:
        raise InputError(f"{path} contains no samples")
    if info.samplerate <= 0:
        raise InputError(f"{path} declares a sample rate of {info.samplerate} Hz")
    return int(info.samplerate), int(info.frames)


def _as_mono_array(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """numpy or torch ``(T,)`` or ``(1, T)`` -> float64 numpy ``(T,)``, finite."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(audio, dtype=np.float64)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]  # (1, T) -> (T,)
    if array.ndim != 1:
        raise ValueError(f"audio must be (T,) or (1, T), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("audio contains NaN or Inf")
    return array


def _pcm16(array: np.ndarray) -> tuple[np.ndarray, int]:
    num_clipped = int(np.count_nonzero(np.abs(array) > 1.0))
    # +1.0 maps to 32768, one step past int16's maximum: the final clip saturates it at 32767.
    scaled = np.round(np.clip(array, -1.0, 1.0) * _PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16), num_clipped


def to_pcm16(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float audio ``(T,)`` in [-1, 1] -> int16 ``(T,)``: clip to [-1, 1], scale by 32768, round."""
    return _pcm16(_as_mono_array(audio))[0]


def write_wav(path: str | os.PathLike[str], audio: np.ndarray | torch.Tensor, sample_rate: int) -> int:
    """Write ``audio`` ``(T,)`` (or ``(1, T)``) as a 16-bit PCM WAV, atomically.

    Returns the number of samples that were outside [-1, 1] and got clipped. The parent folder must
    exist.
    """
    _check_rate(sample_rate)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    pcm, num_clipped = _pcm16(_as_mono_array(audio))
    atomic_write(path, lambda handle: sf.write(handle, pcm, int(sample_rate), subtype="PCM_16", format="WAV"))
    return num_clipped


def list_audio_files(folder: str | os.PathLike[str]) -> list[Path]:
    """All files under ``folder`` (recursively) with an audio extension, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"audio folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
