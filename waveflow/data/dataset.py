"""Training and validation audio: checked up front, cropped reproducibly.

* :func:`scan_audio` checks a list of files once (in threads): missing, unreadable, other sample
  rates, durations and, when decoding, silent and clipped files. The datasets run it when they are
  built and raise one ``ValueError`` listing every unusable file, so a bad list fails before
  training starts rather than hours into it.
* :class:`SegmentDataset` returns fixed-length random crops for training. The crop position and the
  dequantisation noise are a pure function of ``(seed, epoch, index)``, so an epoch resumed in the
  middle, or read by any number of worker processes, yields exactly the same batches.
* :class:`UtteranceDataset` returns whole utterances (cut to a maximum length and to a multiple of
  the model's group size) for validation, deterministically.

The datasets return audio only; mel spectrograms are computed by the training loop on the device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from waveflow.audio.io import audio_info, load_audio

SILENCE_PEAK_DBFS = -60.0  # a file whose peak is below this is reported as silent
FULL_SCALE = 32767 / 32768  # the largest positive 16-bit sample; |x| at or above it counts as clipped
CLIPPED_FRACTION = 1e-4  # files with at least this fraction of samples at full scale are reported
_LSB = 1 / 32768  # one 16-bit quantisation step
DEFAULT_CACHE_BYTES = 256 * 2**20  # decoded audio up to this size is kept in memory

_T = TypeVar("_T")
_R = TypeVar("_R")


def _thread_map(fn: Callable[[_T], _R], items: Sequence[_T], num_threads: int | None) -> list[_R]:
    # libsndfile and soxr release the GIL, so threads overlap file reads and decoding.
    workers = num_threads or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _target_length(num_frames: int, file_rate: int, sample_rate: int) -> int:
    """Samples after resampling ``num_frames`` from ``file_rate`` to ``sample_rate`` (soxr rounds)."""
    if file_rate == sample_rate:
        return num_frames
    return int(round(num_frames * sample_rate / file_rate))


# -- scanning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileInfo:
    """What a scan learned about one readable file; ``peak`` and ``clipped_fraction`` need decoding."""

    sample_rate: int
    num_frames: int
    peak: float | None = None
    clipped_fraction: float | None = None

    @property
    def seconds(self) -> float:
        return self.num_frames / self.sample_rate


@dataclass
class ScanReport:
    """Result of :func:`scan_audio`. Paths are as given; ``files`` keeps their order."""

    sample_rate: int
    resample: bool
    decoded: bool
    files: list[Path]
    info: dict[Path, FileInfo] = field(default_factory=dict)
    missing: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)

    @property
    def other_rate(self) -> dict[Path, int]:
        """Readable files at another sample rate (refused unless ``resample``)."""
        return {p: i.sample_rate for p, i in self.info.items() if i.sample_rate != self.sample_rate}

    @property
    def usable(self) -> list[Path]:
        """Readable files at the right rate, or at any rate when resampling; in ``files`` order."""
        refused = set() if self.resample else set(self.other_rate)
        return [p for p in self.files if p in self.info and p not in refused]

    @property
    def silent(self) -> list[Path]:
        limit = 10 ** (SILENCE_PEAK_DBFS / 20)
        return [p for p, i in self.info.items() if i.peak is not None and i.peak < limit]

    @property
    def clipped(self) -> dict[Path, float]:
        """Files with at least ``CLIPPED_FRACTION`` of their samples at full scale -> that fraction."""
        return {
            p: i.clipped_fraction
            for p, i in self.info.items()
            if i.clipped_fraction is not None and i.clipped_fraction >= CLIPPED_FRACTION
        }

    def lengths(self) -> dict[Path, int]:
        """Samples per usable file at ``sample_rate`` (after resampling, if any)."""
        return {
            p: _target_length(self.info[p].num_frames, self.info[p].sample_rate, self.sample_rate)
            for p in self.usable
        }

    def errors(self) -> list[str]:
        """One line per unusable file: missing, unreadable, or (without resampling) another rate."""
        lines = [f"missing: {p}" for p in self.missing]
        lines += [f"unreadable: {reason}" for reason in self.unreadable.values()]
        if not self.resample:
            lines += [
                f"sample rate {rate} Hz instead of {self.sample_rate} Hz (resampling is off): {p}"
                for p, rate in self.other_rate.items()
            ]
        return lines

    def raise_for_errors(self, what: str = "audio files") -> None:
        """Raise one ``ValueError`` listing every unusable file, if there is any."""
        errors = self.errors()
        if errors:
            raise ValueError(
                f"{len(errors)} of {len(self.files)} {what} cannot be used:\n  " + "\n  ".join(errors)
            )

    def to_dict(self) -> dict[str, Any]:
        """Counts, durations and every flagged file, as plain types (for JSON reports)."""
        seconds = [self.info[p].seconds for p in self.usable]
        return {
            "sample_rate": self.sample_rate,
            "num_files": len(self.files),
            "num_usable": len(self.usable),
            "total_hours": sum(seconds) / 3600,
            "min_seconds": min(seconds, default=0.0),
            "max_seconds": max(seconds, default=0.0),
            "mean_seconds": sum(seconds) / len(seconds) if seconds else 0.0,
            "missing": [str(p) for p in self.missing],
            "unreadable": {str(p): reason for p, reason in self.unreadable.items()},
            "other_sample_rate": {str(p): rate for p, rate in self.other_rate.items()},
            "silent": [str(p) for p in self.silent] if self.decoded else None,
            "clipped": {str(p): f for p, f in self.clipped.items()} if self.decoded else None,
        }

    def summary(self) -> str:
        """A few human-readable lines: counts, duration, and every flagged file."""
        d = self.to_dict()
        lines = [
            f"{d['num_files']} files, {d['num_usable']} usable, {d['total_hours']:.2f} h "
            f"(clips {d['min_seconds']:.2f}-{d['max_seconds']:.2f} s, mean {d['mean_seconds']:.2f} s)"
        ]
        lines += self.errors()
        if self.resample:
            lines += [f"resampled from {rate} Hz: {p}" for p, rate in self.other_rate.items()]
        if self.decoded:
            lines += [f"silent (peak below {SILENCE_PEAK_DBFS:.0f} dBFS): {p}" for p in self.silent]
            lines += [
                f"clipped ({fraction:.3%} of samples at full scale): {p}"
                for p, fraction in self.clipped.items()
            ]
        return "\n".join(lines)


def scan_audio(
    files: Iterable[str | os.PathLike[str]],
    sample_rate: int,
    *,
    resample: bool,
    decode: bool = True,
    num_threads: int | None = None,
) -> ScanReport:
    """Check every file once (in threads) and report what is wrong with any of them.

    With ``decode`` each file is decoded to measure its peak and clipped fraction (needed for the
    silent/clipped lists); without it only the header is read (sample rate and length), which is
    what the datasets need and takes a fraction of the time. Nothing is raised for bad files: see
    :meth:`ScanReport.raise_for_errors`.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    paths = [Path(f) for f in files]
    report = ScanReport(sample_rate=sample_rate, resample=resample, decoded=decode, files=paths)

    def inspect(path: Path) -> FileInfo | BaseException:
        try:
            if not decode:
                rate, frames = audio_info(path)
                return FileInfo(rate, frames)
            audio, rate = load_audio(path)  # at the file's own rate: peaks before any resampling
            magnitude = np.abs(audio)
            return FileInfo(
                rate,
                audio.shape[0],
                peak=float(magnitude.max()),
                clipped_fraction=float(np.count_nonzero(magnitude >= FULL_SCALE)) / audio.shape[0],
            )
        except (FileNotFoundError, ValueError) as exc:
            return exc

    for path, result in zip(paths, _thread_map(inspect, paths, num_threads)):
        if isinstance(result, FileInfo):
            report.info[path] = result
        elif isinstance(result, FileNotFoundError):
            report.missing.append(path)
        else:
            report.unreadable[path] = str(result)
    return report


# -- datasets ------------------------------------------------------------------------------------
class _AudioStore:
    """Decoded audio by index: from memory when the whole set fits ``cache_bytes``, else from disk."""

    def __init__(
        self,
        files: Sequence[Path],
        lengths: Sequence[int],
        sample_rate: int,
        resample: bool,
        cache_bytes: int,
        max_samples: int | None = None,
    ):
        self.files = list(files)
        self.sample_rate = sample_rate
        self.resample = resample
        self.max_samples = max_samples
        self.cache: list[np.ndarray] | None = None
        kept = [min(n, max_samples) if max_samples is not None else n for n in lengths]
        if sum(kept) * 4 <= cache_bytes:
            # Loaded before any DataLoader worker starts, so forked workers share the pages.
            self.cache = _thread_map(self._read, self.files, None)

    def _read(self, path: Path) -> np.ndarray:
        audio = load_audio(path, self.sample_rate, resample=self.resample)[0]
        return audio if self.max_samples is None else audio[: self.max_samples]

    def __getitem__(self, index: int) -> np.ndarray:
        return self.cache[index] if self.cache is not None else self._read(self.files[index])


def _check_files(
    files: Sequence[str | os.PathLike[str]], sample_rate: int, resample: bool, what: str
) -> ScanReport:
    if isinstance(files, (str, os.PathLike)):
        raise ValueError(f"expected a list of audio files, got the single path {files!r} (use read_filelist)")
    report = scan_audio(files, sample_rate, resample=resample, decode=False)
    report.raise_for_errors(what)
    return report


class SegmentDataset(Dataset):
    """Fixed-length training crops ``(segment_length,)`` float32 from a list of audio files.

    ``dataset[i]`` is a crop of usable clip ``i`` whose start (and dequantisation noise) is drawn
    from a generator seeded with ``(seed, epoch, i)``: call :meth:`set_epoch` before each epoch.
    Clips shorter than ``segment_length`` are dropped (``short_clips="skip"``, counted in
    ``num_skipped``) or placed at a random offset in a segment of noise at the 16-bit quantisation
    level (``"pad_noise"``); zero padding is not offered because exact digital silence lets the
    flow's log-scales run to -inf (NVIDIA/waveglow#95). ``dequantize`` adds uniform noise one
    16-bit step wide, so the model fits a continuous density.

    Every file is checked when the dataset is built (``ValueError`` listing all unusable files).
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        sample_rate: int,
        segment_length: int,
        *,
        seed: int = 1234,
        short_clips: Literal["skip", "pad_noise"] = "skip",
        dequantize: bool = True,
        resample: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        if isinstance(segment_length, bool) or not isinstance(segment_length, int) or segment_length < 1:
            raise ValueError(f"segment_length must be a positive integer, got {segment_length!r}")
        if short_clips not in ("skip", "pad_noise"):
            raise ValueError(f"short_clips must be 'skip' or 'pad_noise', got {short_clips!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.report = _check_files(files, sample_rate, resample, "training files")
        lengths = self.report.lengths()
        if short_clips == "skip":
            self.skipped_files = [p for p in self.report.usable if lengths[p] < segment_length]
        else:
            self.skipped_files = []
        skipped = set(self.skipped_files)
        kept = [p for p in self.report.usable if p not in skipped]
        if not kept:
            longest = max(lengths.values())
            raise ValueError(
                f"all {len(lengths)} training files are shorter than segment_length={segment_length} samples "
                f"({segment_length / sample_rate:.2f} s; the longest has {longest}); lower data.segment_length "
                "or set data.short_clips=pad_noise"
            )
        self.files = kept
        self.sample_rate = sample_rate
        self.segment_length = segment_length
        self.seed = seed
        self.short_clips = short_clips
        self.dequantize = dequantize
        self.epoch = 0
        self._audio = _AudioStore(kept, [lengths[p] for p in kept], sample_rate, resample, cache_bytes)

    @property
    def num_skipped(self) -> int:
        """Clips dropped for being shorter than ``segment_length`` (``short_clips="skip"``)."""
        return len(self.skipped_files)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} clips")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        audio = self._audio[index]
        length = self.segment_length
        if audio.shape[0] >= length:
            start = int(rng.integers(0, audio.shape[0] - length + 1))
            segment = audio[start : start + length].astype(np.float64)
        else:
            # pad_noise (or a resampled clip a sample shorter than its header promised).
            segment = rng.uniform(-_LSB, _LSB, length)
            offset = int(rng.integers(0, length - audio.shape[0] + 1))
            segment[offset : offset + audio.shape[0]] = audio
        if self.dequantize:
            segment += rng.uniform(-_LSB / 2, _LSB / 2, length)
        return torch.from_numpy(segment.astype(np.float32))


class UtteranceDataset(Dataset):
    """Whole utterances for validation: ``dataset[i] -> (audio (T,) float32, name)``.

    ``T`` is the clip length cut to ``max_seconds`` and then down to a multiple of ``multiple_of``
    (the model's ``n_group``); ``name`` is the file name without extension. Clips shorter than
    ``multiple_of`` samples are dropped (``skipped_files``). With ``dequantize`` (default, matching
    training) the same fixed noise, seeded by ``(seed, i)``, is added on every call, so validation
    NLLs are comparable across steps.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        sample_rate: int,
        *,
        max_seconds: float,
        multiple_of: int,
        resample: bool = False,
        dequantize: bool = True,
        seed: int = 1234,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        if not (max_seconds > 0 and math.isfinite(max_seconds)):
            raise ValueError(f"max_seconds must be a positive number, got {max_seconds!r}")
        if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
            raise ValueError(f"multiple_of must be a positive integer, got {multiple_of!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.report = _check_files(files, sample_rate, resample, "validation files")
        self.max_samples = int(max_seconds * sample_rate) // multiple_of * multiple_of
        if self.max_samples == 0:
            raise ValueError(
                f"max_seconds={max_seconds} is shorter than one group of {multiple_of} samples at {sample_rate} Hz"
            )
        lengths = self.report.lengths()
        self.skipped_files = [p for p in self.report.usable if lengths[p] < multiple_of]
        self.files = [p for p in self.report.usable if lengths[p] >= multiple_of]
        self.names = [p.stem for p in self.files]
        self.multiple_of = multiple_of
        self.dequantize = dequantize
        self.seed = seed
        self._audio = _AudioStore(
            self.files, [lengths[p] for p in self.files], sample_rate, resample, cache_bytes, self.max_samples
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} utterances")
        audio = self._audio[index]
        length = min(audio.shape[0], self.max_samples) // self.multiple_of * self.multiple_of
        segment = audio[:length].astype(np.float64)
        if self.dequantize:
            segment += np.random.default_rng((self.seed, index)).uniform(-_LSB / 2, _LSB / 2, length)
        return torch.from_numpy(segment.astype(np.float32)), self.names[index]
