"""Writing audio counts the samples outside [-1, 1]: synthesize, resynthesize and evaluate say so per
file (not under -q), and evaluate's summary.json records the counts of the files it synthesized."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.cli.conftest import speech_mel, write_speech_wav
from waveflow import cli
from waveflow.cli import _inputs
from waveflow.infer.vocoder import Vocoder

GAIN = 40.0


@pytest.fixture
def loud(monkeypatch):
    """Make every vocoder output GAIN times louder (so it clips) and keep what it returned."""
    outputs = []
    real = Vocoder.forward

    def forward(self, *args, **kwargs):
        audio, lengths = real(self, *args, **kwargs)
        audio = audio * GAIN
        outputs.append((audio.detach().numpy().copy(), lengths))
        return audio, lengths

    monkeypatch.setattr(Vocoder, "forward", forward)
    return outputs


def _notes(err: str) -> dict[str, tuple[int, float]]:
    """``{file: (clipped samples, percent)}`` from the clipping notes on stderr."""
    found = re.findall(r"note: (\d+) sample\(s\) \(([\d.e+-]+)%\) clipped in (\S+)", err)
    assert len(found) == len({path for _, _, path in found}), found  # once per file
    return {path: (int(n), float(share)) for n, share, path in found}


def test_note_clipped_and_record_clipping(capsys):
    with _inputs.record_clipping() as outer:
        assert _inputs.note_clipped("a.wav", 0, 100) == 0  # nothing clipped: no note, no record
        with _inputs.record_clipping() as inner:
            assert _inputs.note_clipped("b.wav", 3, 400) == 3
    assert _inputs.note_clipped("c.wav", 5, 10) == 5  # no block open: a note only
    assert outer == {"b.wav": 3} and inner == {"b.wav": 3}
    assert capsys.readouterr().err.splitlines() == [
        "note: 3 sample(s) (0.75%) clipped in b.wav",
        "note: 5 sample(s) (50%) clipped in c.wav",
    ]
    _inputs.set_quiet(True)
    try:
        _inputs.note_clipped("d.wav", 5, 10)
    finally:
        _inputs.set_quiet(False)
    assert capsys.readouterr().err == ""


def test_resynthesize_reports_the_clipped_samples_once(checkpoint, tmp_path, capsys, loud):
    source = tmp_path / "in.wav"
    audio = write_speech_wav(source, 4000)
    out = tmp_path / "out.wav"
    assert cli.main(["resynthesize", str(checkpoint), str(source), str(out)]) == 0
    notes = _notes(capsys.readouterr().err)
    ((generated, _),) = loud
    expected = int(np.count_nonzero(np.abs(generated[0, : audio.shape[0]]) > 1.0))
    assert expected > 0
    assert notes == {str(out): (expected, pytest.approx(100 * expected / audio.shape[0], rel=1e-2))}

    assert cli.main(["-q", "resynthesize", str(checkpoint), str(source), str(out)]) == 0
    assert "clipped" not in capsys.readouterr().err


def test_synthesize_and_evaluate_report_per_file(checkpoint, tmp_path, capsys, loud):
    mels = tmp_path / "mels"
    mels.mkdir()
    for i in range(2):
        np.save(mels / f"utt{i}.npy", speech_mel(3000 + 1000 * i, seed=i))
    assert cli.main(["synthesize", str(checkpoint), str(mels), "-o", str(tmp_path / "wav")]) == 0
    notes = _notes(capsys.readouterr().err)
    assert sorted(notes) == [str(tmp_path / "wav" / f"utt{i}.wav") for i in range(2)]
    expected = [
        int(np.count_nonzero(np.abs(audio[row, : int(lengths[row])]) > 1.0))
        for audio, lengths in loud
        for row in range(audio.shape[0])
    ]
    assert sorted(count for count, _ in notes.values()) == sorted(expected) and min(expected) > 0

    # evaluate --synthesize: the notes and summary.json's counts agree.
    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(2):
        write_speech_wav(refs / f"utt{i}.wav", 4000, seed=i)
    loud.clear()
    argv = [
        "evaluate",
        str(checkpoint),
        str(refs),
        "--generated-dir",
        str(tmp_path / "gen"),
        "-o",
        str(tmp_path / "e"),
    ]
    assert cli.main([*argv, "--synthesize", "--no-griffin-lim"]) == 0
    notes = _notes(capsys.readouterr().err)
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["clipped_samples"] == {path: count for path, (count, _) in notes.items()}
    assert sorted(summary["clipped_samples"]) == [str(tmp_path / "gen" / f"utt{i}.wav") for i in range(2)]
