"""``waveflow score`` and ``waveflow evaluate``: likelihood ranking, report files, metric wiring."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from tests.cli.conftest import MEL, MODEL, SAMPLE_RATE, write_speech_wav
from tests.helpers import speech_like
from waveflow import cli
from waveflow.audio.features import MelSpectrogram
from waveflow.audio.io import write_wav
from waveflow.checkpoint import save_checkpoint
from waveflow.eval.metrics import METRIC_NAMES
from waveflow.infer.vocoder import Vocoder
from waveflow.model import WaveGlow


def _train_briefly(path, steps: int = 20) -> None:
    """A few Adam steps of exact-likelihood training on speech-like clips (seconds on a CPU)."""
    torch.manual_seed(0)
    model = WaveGlow(MODEL)
    audio = torch.from_numpy(np.stack([speech_like(1024, SAMPLE_RATE, seed=s) for s in range(8)]))
    mel = MelSpectrogram.from_config(MEL)(audio)  # (8, n_mels, frames)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randint(0, 8, (2,), generator=generator)
        loss = model.nll(audio[batch], mel[batch]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(path, model.eval(), MEL)


def test_score_ranks_speech_above_noise_after_brief_training(tmp_path, capsys):
    checkpoint = tmp_path / "trained.pt"
    _train_briefly(checkpoint)
    speech = write_speech_wav(tmp_path / "speech.wav", 16000, seed=99)
    noise = np.random.default_rng(0).standard_normal(16000)
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2))  # same energy: only structure differs
    write_wav(tmp_path / "noise.wav", noise, SAMPLE_RATE)

    report = tmp_path / "scores" / "nll.json"
    wavs = [str(tmp_path / "speech.wav"), str(tmp_path / "noise.wav")]
    assert cli.main(["score", str(checkpoint), *wavs, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "nats/sample" in out and "mean" in out
    data = json.loads(report.read_text())
    by_name = {row["path"].rsplit("/", 1)[-1]: row for row in data["files"]}
    assert by_name["speech.wav"]["nats_per_sample"] < by_name["noise.wav"]["nats_per_sample"] - 1.0
    for row in data["files"]:
        assert math.isfinite(row["nats_per_sample"])
        assert row["bits_per_sample"] == pytest.approx(row["nats_per_sample"] / math.log(2))
        assert row["num_samples"] == 16000
    assert data["mean"]["nats_per_sample"] == pytest.approx(
        (by_name["speech.wav"]["nats_per_sample"] + by_name["noise.wav"]["nats_per_sample"]) / 2
    )
    # The same number as the Python API.
    vocoder = Vocoder.from_checkpoint(checkpoint)
    expected = vocoder.score(speech, SAMPLE_RATE)["nats_per_sample"]
    assert by_name["speech.wav"]["nats_per_sample"] == pytest.approx(expected, abs=1e-4)


def test_score_bad_input(checkpoint, tmp_path, capsys):
    (tmp_path / "notes.wav").write_text("not audio")
    assert cli.main(["score", str(checkpoint), str(tmp_path / "notes.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.wav" in err[0] and "not a readable audio file" in err[0]
    write_speech_wav(tmp_path / "ok.wav", 4000)
    assert cli.main(["score", str(checkpoint), str(tmp_path / "ok.wav"), str(tmp_path / "notes.wav")]) == 1


@pytest.fixture
def references(tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    for i, n in enumerate((8000, 9600)):
        write_speech_wav(folder / f"utt{i}.wav", n, seed=i)
    (tmp_path / "test.txt").write_text("refs/utt0.wav|one\nrefs/utt1.wav|two\n")
    return tmp_path / "test.txt"


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_recipe_pipeline(checkpoint, references, tmp_path, capsys):
    """The LJSpeech recipe's three calls, verbatim apart from the paths."""
    exp = tmp_path / "exp"
    assert (
        cli.main(
            [
                "extract-mels",
                "--checkpoint",
                str(checkpoint),
                "--filelist",
                str(references),
                "-o",
                str(exp / "mels"),
            ]
        )
        == 0
    )
    assert cli.main(["synthesize", str(checkpoint), str(exp / "mels"), "-o", str(exp / "wav")]) == 0
    argv = ["evaluate", str(checkpoint), "--filelist", str(references), "--generated-dir", str(exp / "wav")]
    assert cli.main([*argv, "-o", str(exp / "eval")]) == 0
    assert "metric (mean)" in capsys.readouterr().out

    rows = _read_csv(exp / "eval" / "metrics.csv")
    assert [(r["file"], r["system"]) for r in rows] == [
        ("utt0", "waveflow"),
        ("utt0", "griffin_lim"),
        ("utt1", "waveflow"),
        ("utt1", "griffin_lim"),
    ]
    assert list(rows[0]) == ["file", "system", "num_samples", *METRIC_NAMES, "ref_nll_nats", "ref_nll_bits"]
    assert [int(r["num_samples"]) for r in rows] == [8000, 8000, 9600, 9600]  # trimmed to the reference
    for row in rows:
        for name in (
            "pesq_wb",
            "stoi",
            "mrstft",
            "spectral_convergence",
            "log_stft_l1",
            "mel_l1",
            "voicing_error",
        ):
            assert math.isfinite(float(row[name])), (row["system"], name)
    # Griffin-Lim on the true mel beats an untrained flow on the mel distance.
    for utt in ("utt0", "utt1"):
        by_system = {r["system"]: r for r in rows if r["file"] == utt}
        assert float(by_system["griffin_lim"]["mel_l1"]) < float(by_system["waveflow"]["mel_l1"])
        assert by_system["griffin_lim"]["ref_nll_nats"] == by_system["waveflow"]["ref_nll_nats"]

    summary = json.loads((exp / "eval" / "summary.json").read_text())
    assert summary["num_references"] == summary["num_evaluated"] == 2
    wf = [float(r["mel_l1"]) for r in rows if r["system"] == "waveflow"]
    assert summary["systems"]["waveflow"]["mel_l1"] == {"mean": pytest.approx(np.mean(wf)), "count": 2}
    assert set(summary["systems"]) == {"waveflow", "griffin_lim"}
    assert summary["config"]["sample_rate"] == SAMPLE_RATE
    assert len(summary["config"]["mrstft_resolutions"]) == 3
    assert math.isfinite(summary["reference_nll_per_sample"]["nats"]["mean"])


def test_evaluate_metric_wiring_with_known_answers(checkpoint, references, tmp_path):
    """References as their own 'generated' files score perfectly; noise scores badly."""
    refs = references.parent / "refs"
    same, noise = tmp_path / "same", tmp_path / "noise"
    shutil.copytree(refs, same)
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i, n in enumerate((8000, 9600)):
        write_wav(noise / f"utt{i}.wav", 0.3 * rng.standard_normal(n), SAMPLE_RATE)
    base = ["evaluate", str(checkpoint), "--filelist", str(references), "--no-griffin-lim"]
    assert cli.main([*base, "--generated-dir", str(same), "-o", str(tmp_path / "e_same")]) == 0
    assert cli.main([*base, "--generated-dir", str(noise), "-o", str(tmp_path / "e_noise")]) == 0
    same_rows = _read_csv(tmp_path / "e_same" / "metrics.csv")
    noise_rows = _read_csv(tmp_path / "e_noise" / "metrics.csv")
    assert {r["system"] for r in same_rows + noise_rows} == {"waveflow"}
    for row in same_rows:
        assert float(row["pesq_wb"]) > 4.0 and float(row["stoi"]) > 0.99
        assert float(row["mrstft"]) == 0.0 and float(row["mel_l1"]) == 0.0
        assert float(row["f0_rmse_cents"]) == 0.0 and float(row["voicing_error"]) == 0.0
    for row in noise_rows:
        assert float(row["pesq_wb"]) < 1.5 and float(row["stoi"]) < 0.5
        assert float(row["mrstft"]) > 1.0


def test_evaluate_missing_generated_files(checkpoint, references, tmp_path, capsys):
    gen = tmp_path / "gen"
    gen.mkdir()
    write_speech_wav(gen / "utt0.wav", 8000)
    argv = [
        "evaluate",
        str(checkpoint),
        "--filelist",
        str(references),
        "--generated-dir",
        str(gen),
        "-o",
        str(tmp_path / "e"),
    ]
    assert cli.main([*argv, "--no-griffin-lim"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 2 generated file(s) missing" in err[0] and "utt1.wav" in err[0]
    assert not (tmp_path / "e").exists()

    assert cli.main([*argv, "--no-griffin-lim", "--synthesize", "--seed", "1"]) == 0
    assert (gen / "utt1.wav").is_file()
    assert len(_read_csv(tmp_path / "e" / "metrics.csv")) == 2
