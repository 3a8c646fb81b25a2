"""Training on given mels (``data.mel_dir``): teacher-forced TTS outputs instead of computed mels.

Fine-tuning a vocoder on the mels a TTS model actually produces (teacher-forced, so that they stay
aligned with the recordings) lets it learn that model's errors, as HiFi-GAN's fine-tuning does.
For every audio file ``.../X.wav`` the folder holds ``X.npy``, ``X.pt`` or ``X.npz``, read by
:func:`waveflow.data.mel_files.load_mel_file` (nothing in the files is run) as ``(n_mels, frames)``.

**Alignment.** Frame ``i`` belongs to the audio from sample ``i * hop_length`` on (the model's
rule: the conditioning of sample ``t`` comes from frame ``t // hop_length``). A clip of ``T``
samples has ``frames(T) = T // hop_length + 1`` frames with a centred STFT (``mel.center``, the
Tacotron2 convention) or ``T // hop_length`` without (HiFi-GAN's). A TTS model's output may be a
few frames longer or shorter; both are anchored at frame 0, so the difference is at the end:

* within ``data.mel_frame_tolerance`` frames, the mel is cut to ``frames(T)``, or extended to it
  by repeating its last frame;
* further apart, the pair is refused (the mel most likely belongs to another utterance or was
  made with another hop length).

**Crops.** A training crop of ``L`` samples starts at a whole frame, ``k * hop_length`` with ``k``
drawn uniformly from ``0 .. (T - L) // hop_length``, and its mel is frames ``k .. k + frames(L)``
of the aligned mel: exactly the frames whose audio the crop holds (``frames(L)`` is what the mel of
an ``L``-sample crop has, so the model sees the same shapes as with computed mels). Validation
utterances (cut to ``T'`` samples) take the first ``frames(T')`` frames.

Every mel is checked when the dataset is built (missing, unreadable, another number of mel bins,
NaN/Inf, too many or too few frames, two audio files with one name), and one
:class:`~waveflow.errors.InputError` lists every problem, before training starts. Clips shorter
than a segment are skipped (``data.short_clips=skip``; padding them would need frames the mel does
not have).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from waveflow.config import DataConfig, MelConfig
from waveflow.data.dataset import _LSB, DEFAULT_CACHE_BYTES, SegmentDataset, UtteranceDataset
from waveflow.data.mel_files import MEL_EXTENSIONS, load_mel_file
from waveflow.errors import InputError

_MAX_LISTED = 20  # problems listed in one error message


def fit_frames(mel: np.ndarray, num_frames: int) -> np.ndarray:
    """``mel`` ``(n_mels, F)`` cut to ``num_frames`` frames, or extended by repeating its last frame."""
    if mel.shape[1] >= num_frames:
        return mel[:, :num_frames]
    return np.pad(mel, ((0, 0), (0, num_frames - mel.shape[1])), mode="edge")


class MelDir:
    """A folder of mels, one per audio file, matched by file name (``X.wav`` -> ``X.npy|.pt|.npz``)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        n_mels: int,
        hop_length: int,
        center: bool,
        frame_tolerance: int = 4,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"data.mel_dir={self.folder} is not a folder")
        if frame_tolerance < 0:
            raise ValueError(f"frame_tolerance must be >= 0, got {frame_tolerance}")
        self.n_mels = n_mels
        self.hop_length = hop_length
        self.center = center
        self.frame_tolerance = frame_tolerance

    @classmethod
    def from_config(cls, mel: MelConfig, data: DataConfig) -> MelDir:
        return cls(
            data.mel_dir,
            n_mels=mel.n_mels,
            hop_length=mel.hop_length,
            center=mel.center,
            frame_tolerance=data.mel_frame_tolerance,
        )

    def frames_for(self, num_samples: int) -> int:
        """Frames of the mel of ``num_samples`` samples (what the mel front end would compute)."""
        return num_samples // self.hop_length + (1 if self.center else 0)

    def path_for(self, audio_path: Path) -> Path:
        """The mel file of ``audio_path``; ``InputError`` when there is none, or more than one."""
        found = [self.folder / f"{audio_path.stem}{ext}" for ext in MEL_EXTENSIONS]
        found = [p for p in found if p.exists()]
        if not found:
            names = ", ".join(f"{audio_path.stem}{ext}" for ext in MEL_EXTENSIONS)
            raise InputError(f"missing: no mel for {audio_path} in {self.folder} (looked for {names})")
        if len(found) > 1:
            raise InputError(
                f"ambiguous: {audio_path} has {len(found)} mels ({', '.join(p.name for p in found)}); keep one"
            )
        return found[0]

    def read(self, audio_path: Path) -> np.ndarray:
        """The stored mel of ``audio_path``, ``(n_mels, F)`` float32, as it is in the file."""
        path = self.path_for(audio_path)
        try:
            return load_mel_file(
                path,
                self.n_mels,
                expected_by="the config (mel.n_mels)",
                time_first_hint="data.mel_dir needs (n_mels, frames); transpose the files",
            )
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    def check_length(self, mel: np.ndarray, audio_path: Path, num_samples: int) -> None:
        """Refuse a mel whose frame count is more than ``frame_tolerance`` off the audio's."""
        expected = self.frames_for(num_samples)
        if abs(mel.shape[1] - expected) > self.frame_tolerance:
            raise InputError(
                f"{audio_path.name}: its mel has {mel.shape[1]} frames, but its {num_samples} samples make "
                f"{expected} (hop_length {self.hop_length}, {'centred' if self.center else 'uncentred'} STFT); "
                f"more than data.mel_frame_tolerance={self.frame_tolerance} apart"
            )

    def read_all(self, files: Sequence[Path], lengths: Sequence[int], what: str) -> list[np.ndarray]:
        """The mel of every file (``lengths``: its samples), checked; one ``InputError`` lists all problems."""
        problems: list[str] = []
        by_stem: dict[str, Path] = {}
        for path in files:
            if path.stem in by_stem and by_stem[path.stem] != path:
                problems.append(
                    f"two {what} are called {path.stem!r} ({by_stem[path.stem]}, {path}): rename one"
                )
            by_stem.setdefault(path.stem, path)
        mels: list[np.ndarray] = []
        for path, num_samples in zip(files, lengths):
            try:
                mel = self.read(path)
                self.check_length(mel, path, num_samples)
            except InputError as exc:
                problems.append(str(exc))
                continue
            mels.append(mel)
        if problems:
            more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            raise InputError(
                f"data.mel_dir={self.folder}: {len(problems)} problem(s) with the mels of the {len(files)} {what}:\n  "
                + "\n  ".join(problems[:_MAX_LISTED])
                + more
            )
        return mels


class _MelStore:
    """Checked mels by index: kept in memory when they fit ``cache_bytes``, else read again on use."""

    def __init__(
        self, mels: MelDir, files: Sequence[Path], lengths: Sequence[int], what: str, cache_bytes: int
    ):
        self.mels = mels
        self.files = list(files)
        loaded = mels.read_all(self.files, lengths, what)
        self.cache = loaded if sum(m.nbytes for m in loaded) <= cache_bytes else None

    def __getitem__(self, index: int) -> np.ndarray:
        return self.cache[index] if self.cache is not None else self.mels.read(self.files[index])


class MelSegmentDataset(SegmentDataset):
    """:class:`SegmentDataset` with given mels: ``dataset[i] -> (audio (L,), mel (n_mels, frames(L)))``.

    The crop starts at a whole frame and the mel is the slice of frames it holds (module docstring).
    Only ``short_clips="skip"`` is offered.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        sample_rate: int,
        segment_length: int,
        *,
        mels: MelDir,
        seed: int = 1234,
        short_clips: Literal["skip", "pad_noise"] = "skip",
        dequantize: bool = True,
        resample: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        if short_clips != "skip":
            raise ValueError(
                "short_clips='pad_noise' cannot be used with given mels (they have no frames for the padding)"
            )
        super().__init__(
            files,
            sample_rate,
            segment_length,
            seed=seed,
            short_clips="skip",
            dequantize=dequantize,
            resample=resample,
            cache_bytes=cache_bytes,
        )
        self.mels = mels
        lengths = self.report.lengths()
        self._mels = _MelStore(
            mels, self.files, [lengths[p] for p in self.files], "training files", cache_bytes
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} clips")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        audio = self._audio[index]
        length, hop = self.segment_length, self.mels.hop_length
        if audio.shape[0] >= length:
            first = int(rng.integers(0, (audio.shape[0] - length) // hop + 1))  # a whole frame
            segment = audio[first * hop : first * hop + length].astype(np.float64)
            mel = fit_frames(self._mels[index], self.mels.frames_for(audio.shape[0]))
        else:  # a resampled clip a sample shorter than its header promised: noise after its end
            first = 0
            segment = rng.uniform(-_LSB, _LSB, length)
            segment[: audio.shape[0]] = audio
            mel = fit_frames(self._mels[index], self.mels.frames_for(length))
        mel = mel[:, first : first + self.mels.frames_for(length)]  # (n_mels, frames(L))
        if self.dequantize:
            segment += rng.uniform(-_LSB / 2, _LSB / 2, length)
        return torch.from_numpy(segment.astype(np.float32)), torch.from_numpy(np.ascontiguousarray(mel))


class MelUtteranceDataset(UtteranceDataset):
    """:class:`UtteranceDataset` with given mels: ``dataset.mel(i, num_samples)`` is utterance ``i``'s."""

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        sample_rate: int,
        *,
        mels: MelDir,
        max_seconds: float,
        multiple_of: int,
        resample: bool = False,
        dequantize: bool = True,
        seed: int = 1234,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        super().__init__(
            files,
            sample_rate,
            max_seconds=max_seconds,
            multiple_of=multiple_of,
            resample=resample,
            dequantize=dequantize,
            seed=seed,
            cache_bytes=cache_bytes,
        )
        self.mels = mels
        lengths = self.report.lengths()
        self._mels = _MelStore(
            mels, self.files, [lengths[p] for p in self.files], "validation files", cache_bytes
        )

    def mel(self, index: int, num_samples: int) -> torch.Tensor:
        """``(n_mels, frames(num_samples))``: the first frames of utterance ``index``'s mel, for the
        ``num_samples`` samples that ``dataset[index]`` returned."""
        return torch.from_numpy(
            np.ascontiguousarray(fit_frames(self._mels[index], self.mels.frames_for(num_samples)))
        )
