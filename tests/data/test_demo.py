"""The synthetic demo corpus: valid LJSpeech format, deterministic, speech-like, no digital silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from waveflow.cli import main
from waveflow.data import build_demo_corpus, read_metadata, scan_audio


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_demo_corpus(
        tmp_path_factory.mktemp("demo") / "corpus", num_utterances=3, seconds=1.5, seed=7
    )


def test_ljspeech_format(corpus: Path):
    lines = (corpus / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(line.count("|") == 2 for line in lines)
    utterances = read_metadata(corpus)
    assert [u.id for u in utterances] == ["DEMO-0001", "DEMO-0002", "DEMO-0003"]
    assert sorted(p.name for p in (corpus / "wavs").iterdir()) == [f"{u.id}.wav" for u in utterances]
    for u in utterances:
        info = sf.info(u.wav_path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 1, "PCM_16", 33075)
    report = scan_audio([u.wav_path for u in utterances], 22050, resample=False)
    assert report.errors() == [] and report.silent == [] and report.clipped == {}


def _longest_zero_run(pcm: np.ndarray) -> int:
    longest = run = 0
    for is_zero in pcm == 0:
        run = run + 1 if is_zero else 0
        longest = max(longest, run)
    return longest


def test_speech_like_levels(corpus: Path):
    pcm, _ = sf.read(corpus / "wavs" / "DEMO-0002.wav", dtype="int16")
    assert _longest_zero_run(pcm) < 8  # pauses hold noise, not digital silence
    audio = pcm / 32768.0
    assert 0.5 <= np.abs(audio).max() <= 0.8 + 1 / 32768
    frames = audio[: audio.size // 441 * 441].reshape(-1, 441)  # 20 ms frames
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms.max() / rms.min() > 100  # > 40 dB between loud segments and pauses
    # Voiced segments are harmonic: the loudest frame's spectrum has a strong peak below 1 kHz.
    loudest = frames[np.argmax(rms)] * np.hanning(441)
    spectrum = np.abs(np.fft.rfft(loudest, 4096))
    freqs = np.fft.rfftfreq(4096, 1 / 22050)
    assert spectrum[freqs < 1000].max() > 10 * np.median(spectrum)


def test_deterministic_and_seeded(tmp_path: Path, corpus: Path):
    again = build_demo_corpus(tmp_path / "again", num_utterances=3, seconds=1.5, seed=7)
    other = build_demo_corpus(tmp_path / "other", num_utterances=1, seconds=1.5, seed=8)
    first = (corpus / "wavs" / "DEMO-0001.wav").read_bytes()
    assert (again / "wavs" / "DEMO-0001.wav").read_bytes() == first
    assert (other / "wavs" / "DEMO-0001.wav").read_bytes() != first
    assert (again / "metadata.csv").read_bytes() == (corpus / "metadata.csv").read_bytes()


def test_refuses_a_non_empty_folder_and_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        build_demo_corpus(target, num_utterances=1, seconds=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_cli(tmp_path: Path, capsys):
    assert main(["demo-corpus", str(tmp_path / "c"), "--num-utterances", "2", "--seconds", "1"]) == 0
    assert len(read_metadata(tmp_path / "c")) == 2
    assert main(["demo-corpus", str(tmp_path / "d"), "--seconds", "0.1"]) == 2
    assert "seconds must be in [0.5, 60]" in capsys.readouterr().err
