"""``waveflow synthesize --mel-from NAME [--stats FILE]``: a TTS front end's mels on the command line.

ESPnet-style mels (log10, mean/variance normalised with a feats_stats.npz) synthesize, with and
without ``--onnx``, to the WAV files the checkpoint's own ln mels give with the same seed (within one
16-bit step plus float rounding of the conversion); what the conversion cannot repair (the front
end's recipe rate and band against this 16 kHz checkpoint) is a ``warning:`` line that ``-q`` keeps;
wrong statistics or options end with exit code 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from tests.cli.conftest import SAMPLE_RATE, mel_of, speech_mel
from tests.conftest import speech_like
from waveflow import cli
from waveflow.infer.frontends import FRONTEND_NAMES

WAV_TOL = 1e-5 + 1 / 32768  # float rounding of the conversion, plus one 16-bit step


def _read(folder):
    return {p.stem: sf.read(p, dtype="float64")[0] for p in sorted(folder.glob("*.wav"))}


@pytest.fixture
def espnet_mels(tmp_path):
    """``native/`` (the checkpoint's ln mels), ``espnet/`` (the same as ESPnet's normalised log10
    feat_gen) and the ``feats_stats.npz`` of a 'training set' of other utterances."""
    training = np.concatenate(
        [speech_mel(6000, seed=s).T / math.log(10) for s in (21, 22, 23)]
    )  # (frames, 40)
    np.savez(
        tmp_path / "feats_stats.npz",
        count=np.array(training.shape[0]),
        sum=training.sum(0),
        sum_square=(training**2).sum(0),
    )
    mean, std = training.mean(0)[:, None], training.std(0)[:, None]
    (tmp_path / "native").mkdir()
    (tmp_path / "espnet").mkdir()
    silence = np.zeros(SAMPLE_RATE // 5, np.float32)  # TTS corpora start and end in silence
    for i, n in enumerate((9000, 12000)):
        mel = mel_of(np.concatenate([silence, speech_like(n, SAMPLE_RATE, seed=i), silence]))
        np.save(tmp_path / "native" / f"u{i}.npy", mel)
        np.save(tmp_path / "espnet" / f"u{i}.npy", ((mel / math.log(10) - mean) / std).astype(np.float32))
    return tmp_path


def test_espnet_mels_with_stats_give_the_native_audio(checkpoint, espnet_mels, capsys):
    root = espnet_mels
    seed = ["--seed", "9", "--batch-size", "2"]
    assert cli.main(["synthesize", str(checkpoint), str(root / "native"), "-o", str(root / "a"), *seed]) == 0
    capsys.readouterr()
    frontend = ["--mel-from", "espnet", "--stats", str(root / "feats_stats.npz")]
    argv = ["synthesize", str(checkpoint), str(root / "espnet"), "-o", str(root / "b"), *seed, *frontend]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    expected = _read(root / "a")
    for name, actual in _read(root / "b").items():
        np.testing.assert_allclose(actual, expected[name], atol=WAV_TOL, rtol=0)
    assert "warning: --mel-from espnet: espnet mels are 22050 Hz with hop 256" in err
    assert "80-7600 Hz but this vocoder's cover 0-8000 Hz" in err
    assert "note: --mel-from espnet: de-normalised with the statistics; ESPnet2 TTS" in err
    assert "looks like" not in err  # the converted mels fit: no per-file convention notes
    # The warning is not a note: -q keeps it.
    assert cli.main(["-q", *argv[:4], str(root / "c"), *seed, *frontend]) == 0
    quiet = capsys.readouterr().err.splitlines()
    assert quiet and all(line.startswith("warning: --mel-from espnet:") for line in quiet)
    # Without the conversion, the same files give other audio: the comparison has teeth.
    assert (
        cli.main(["-q", "synthesize", str(checkpoint), str(root / "espnet"), "-o", str(root / "d"), *seed])
        == 0
    )
    assert max(np.abs(a - expected[n]).max() for n, a in _read(root / "d").items()) > 0.01


def test_onnx_path_converts_the_same(checkpoint, espnet_mels, capsys):
    root = espnet_mels
    onnx_file = root / "tiny.onnx"
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert cli.main(["-q", "export", str(checkpoint), str(onnx_file)]) == 0
    seed = ["--seed", "9", "--batch-size", "2", "-q"]
    frontend = ["--mel-from", "espnet", "--stats", str(root / "feats_stats.npz")]
    assert cli.main(["synthesize", str(checkpoint), str(root / "native"), "-o", str(root / "a"), *seed]) == 0
    argv = [
        "synthesize",
        "--onnx",
        str(onnx_file),
        str(root / "espnet"),
        "-o",
        str(root / "b"),
        *seed,
        *frontend,
    ]
    assert cli.main(argv) == 0
    expected = _read(root / "a")
    for name, actual in _read(root / "b").items():
        np.testing.assert_allclose(actual, expected[name], atol=1e-4 + WAV_TOL, rtol=0)


def test_a_mel_that_is_not_the_named_front_ends_is_noted(checkpoint, espnet_mels, capsys):
    root = espnet_mels
    argv = [
        "synthesize",
        str(checkpoint),
        str(root / "native"),
        "-o",
        str(root / "out"),
        "--mel-from",
        "espnet",
    ]
    assert cli.main(argv) == 0  # ln mels called ESPnet's, without statistics
    notes = [line for line in capsys.readouterr().err.splitlines() if "looks like" in line]
    assert len(notes) == 2 and all("natural log" in line for line in notes)


def test_mel_from_errors(checkpoint, espnet_mels, tmp_path, capsys):
    root = espnet_mels
    np.savez(tmp_path / "wide.npz", mean=np.zeros(80), scale=np.ones(80))
    base = ["synthesize", str(checkpoint), str(root / "espnet"), "-o", str(tmp_path / "out")]
    cases = [
        (["--mel-from", "nvidia", "--stats", str(root / "feats_stats.npz")], "not mean/variance normalised"),
        (
            ["--mel-from", "espnet", "--stats", str(tmp_path / "wide.npz")],
            "80 values but the vocoder has n_mels=40",
        ),
        (["--mel-from", "espnet", "--stats", str(tmp_path / "none.npz")], "statistics file not found"),
        (["--mel-from", "espnet", "--stats", str(root / "native" / "u0.npy")], "expected (2, n_mels)"),
        (["--stats", str(root / "feats_stats.npz")], "--stats needs --mel-from"),
    ]
    for extra, expected in cases:
        assert cli.main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("waveflow synthesize: error:") and expected in err[-1], err
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--mel-from", "tacotron"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tacotron'" in capsys.readouterr().err


def test_every_front_end_is_a_choice(capsys):
    with pytest.raises(SystemExit):
        cli.main(["synthesize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--mel-from {" + ",".join(FRONTEND_NAMES) + "}" in text
