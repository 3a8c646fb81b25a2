"""Audio checks and the datasets: crops as a pure function of (seed, epoch, index), short clips,
errors that name every bad file, other sample rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from tests.helpers import speech_like
from waveflow.audio.io import write_wav
from waveflow.data import SegmentDataset, UtteranceDataset, scan_audio

SR = 22050
LSB = 1 / 32768


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    """Four 16-bit clips of 0.5-0.8 s."""
    paths = []
    for i, seconds in enumerate((0.5, 0.6, 0.7, 0.8)):
        path = tmp_path / f"clip{i}.wav"
        write_wav(path, speech_like(int(seconds * SR), SR, seed=i), SR)
        paths.append(path)
    return paths


def _pcm(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def _offset_of(segment: np.ndarray, audio: np.ndarray) -> int:
    """Where ``segment`` occurs in ``audio`` (exactly), or -1."""
    length = segment.shape[0]
    for start in range(audio.shape[0] - length + 1):
        if np.array_equal(audio[start : start + length], segment):
            return start
    return -1


def test_crops_are_a_pure_function_of_seed_epoch_index(clips):
    first = SegmentDataset(clips, SR, 4096, seed=3)
    again = SegmentDataset(clips, SR, 4096, seed=3)  # a fresh process resuming the run
    first.set_epoch(5)
    again.set_epoch(5)
    for index in range(len(clips)):
        assert torch.equal(first[index], again[index])
        assert torch.equal(first[index], first[index])  # no hidden state advances between calls
    crop = first[2]
    first.set_epoch(6)
    assert not torch.equal(first[2], crop)
    other_seed = SegmentDataset(clips, SR, 4096, seed=4)
    other_seed.set_epoch(5)
    assert not torch.equal(other_seed[2], crop)


def test_worker_processes_do_not_change_the_crops(clips):
    dataset = SegmentDataset(clips, SR, 2048, seed=11)
    dataset.set_epoch(2)
    direct = torch.stack([dataset[i] for i in range(len(dataset))])
    loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), direct)


def test_a_crop_is_a_window_of_the_file_and_dequantization_is_half_a_step(clips):
    plain = SegmentDataset(clips, SR, 4096, seed=0, dequantize=False)
    noisy = SegmentDataset(clips, SR, 4096, seed=0, dequantize=True)
    audio = _pcm(clips[1])
    segment = plain[1].numpy()
    assert segment.dtype == np.float32 and segment.shape == (4096,)
    start = _offset_of(segment, audio)
    assert start >= 0
    difference = noisy[1].numpy().astype(np.float64) - segment
    assert np.abs(difference).max() <= LSB / 2 + 1e-9
    assert np.abs(difference).max() > LSB / 4  # the noise is there
    starts = set()
    for epoch in range(8):
        plain.set_epoch(epoch)
        starts.add(_offset_of(plain[1].numpy(), audio))
    assert len(starts) > 4 and -1 not in starts  # the position moves from epoch to epoch


def test_short_clips_skip_is_counted(clips):
    dataset = SegmentDataset(clips, SR, int(0.65 * SR), short_clips="skip")
    assert len(dataset) == 2
    assert dataset.num_skipped == 2
    assert dataset.skipped_files == clips[:2]
    assert dataset.files == clips[2:]


def test_short_clips_pad_noise_has_no_digital_zeros(clips):
    length = SR  # 1 s: every clip is shorter
    dataset = SegmentDataset(clips, SR, length, short_clips="pad_noise", dequantize=False)
    assert len(dataset) == 4 and dataset.num_skipped == 0
    audio = _pcm(clips[0])
    segment = dataset[0].numpy()
    assert np.count_nonzero(segment == 0.0) <= np.count_nonzero(audio == 0.0)  # only the clip's own zeros
    start = _offset_of(audio, segment)  # the clip sits whole inside the segment
    assert start >= 0
    padding = np.concatenate([segment[:start], segment[start + audio.shape[0] :]])
    assert padding.size == length - audio.shape[0]
    assert np.count_nonzero(padding == 0.0) == 0
    assert np.abs(padding).max() <= LSB


def test_all_clips_too_short(clips):
    with pytest.raises(ValueError, match="all 4 training files are shorter than segment_length=22050"):
        SegmentDataset(clips, SR, SR)


def test_every_bad_file_is_named_in_one_error(clips, tmp_path: Path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage that is no wave file" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"
    other_rate = tmp_path / "sixteen_k.wav"
    write_wav(other_rate, speech_like(16000, 16000), 16000)
    files = [*clips, corrupt, missing, empty, other_rate]
    with pytest.raises(ValueError) as info:
        SegmentDataset(files, SR, 2048)
    message = str(info.value)
    assert message.startswith("4 of 8 training files cannot be used")
    for path in (corrupt, missing, empty, other_rate):
        assert str(path) in message
    assert "16000 Hz instead of 22050 Hz" in message
    for path in clips:
        assert str(path) not in message


def test_other_rates_are_resampled_when_asked(tmp_path: Path):
    path = tmp_path / "sixteen_k.wav"
    write_wav(path, speech_like(16000, 16000), 16000)  # 1 s
    with pytest.raises(ValueError, match="resampling is off"):
        UtteranceDataset([path], SR, max_seconds=5.0, multiple_of=8)
    dataset = UtteranceDataset([path], SR, max_seconds=5.0, multiple_of=8, resample=True)
    audio, name = dataset[0]
    assert name == "sixteen_k"
    assert abs(audio.shape[0] - SR) <= 8 and audio.shape[0] % 8 == 0
    segments = SegmentDataset([path], SR, 8192, resample=True)
    assert segments.report.other_rate == {path: 16000}
    assert segments[0].shape == (8192,)


def test_utterances_are_cut_deterministically(clips):
    dataset = UtteranceDataset(clips, SR, max_seconds=0.55, multiple_of=8, seed=5)
    assert len(dataset) == 4
    lengths = [dataset[i][0].shape[0] for i in range(4)]
    assert lengths[0] == int(0.5 * SR) // 8 * 8  # shorter than the limit: whole clip, cut to whole groups
    assert lengths[1:] == [int(0.55 * SR) // 8 * 8] * 3
    audio, name = dataset[1]
    assert name == "clip1"
    assert torch.equal(audio, dataset[1][0])  # the same noise every time
    reference = _pcm(clips[1])[: audio.shape[0]]
    assert np.abs(audio.numpy().astype(np.float64) - reference).max() <= LSB / 2 + 1e-9
    plain = UtteranceDataset(clips, SR, max_seconds=0.55, multiple_of=8, dequantize=False)
    assert np.array_equal(plain[1][0].numpy(), reference)


def test_scan_reports_silent_and_clipped_files(clips, tmp_path: Path):
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.random.default_rng(0).uniform(-2e-4, 2e-4, SR), SR)
    clipped = tmp_path / "clipped.wav"
    write_wav(clipped, np.clip(3.0 * speech_like(SR, SR), -1.0, 1.0), SR)
    report = scan_audio([*clips, silent, clipped], SR, resample=False)
    assert report.silent == [silent]
    assert list(report.clipped) == [clipped] and report.clipped[clipped] > 0.01
    assert report.errors() == []
    summary = report.to_dict()
    assert summary["num_files"] == summary["num_usable"] == 6
    assert summary["min_seconds"] == pytest.approx(0.5, abs=1e-4)
    assert summary["max_seconds"] == pytest.approx(1.0, abs=1e-4)
    header_only = scan_audio([*clips, silent], SR, resample=False, decode=False)
    assert header_only.to_dict()["silent"] is None  # not measured without decoding


def test_a_single_path_is_not_a_file_list(clips):
    with pytest.raises(ValueError, match="single path"):
        SegmentDataset(str(clips[0]), SR, 1024)
