"""``waveflow.eval.run`` from Python, without the command line: rows, failures, summary and files."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from tests.cli.conftest import MEL, SAMPLE_RATE, tiny_model, write_speech_wav
from waveflow.audio.io import write_wav
from waveflow.checkpoint import save_checkpoint
from waveflow.eval import run as evaluation
from waveflow.eval.metrics import METRIC_NAMES
from waveflow.infer.vocoder import Vocoder

pytest.importorskip("librosa", reason="F0 and Griffin-Lim need librosa (pip install 'waveflow[eval]')")


@pytest.fixture(scope="module")
def vocoder(tmp_path_factory) -> Vocoder:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, tiny_model(), MEL)
    return Vocoder.from_checkpoint(path)


def test_evaluate_files_scores_known_answers_and_collects_failures(vocoder, tmp_path):
    refs, gen = tmp_path / "refs", tmp_path / "gen"
    refs.mkdir()
    gen.mkdir()
    same = write_speech_wav(refs / "same.wav", 8000, seed=0)
    write_wav(gen / "same.wav", same, SAMPLE_RATE)  # the reference as its own vocoded version
    write_speech_wav(refs / "slow.wav", 9600, seed=1)
    write_speech_wav(gen / "slow.wav", 13230, seed=1, sample_rate=22050)  # resampled, with a note
    write_speech_wav(refs / "bad.wav", 4000, seed=2)
    (gen / "bad.wav").write_text("not audio")
    notes: list[str] = []
    references = [refs / "same.wav", refs / "slow.wav", refs / "bad.wav"]

    rows, failed = evaluation.evaluate_files(
        vocoder, references, gen, griffin_lim_iters=2, notice=notes.append, disable_progress=True
    )
    assert [(r["file"], r["system"]) for r in rows] == [
        ("same", "waveflow"),
        ("same", "griffin_lim"),
        ("slow", "waveflow"),
        ("slow", "griffin_lim"),
    ]
    assert list(rows[0]) == list(evaluation.COLUMNS)
    perfect = rows[0]
    assert perfect["num_samples"] == 8000 and perfect["mrstft"] == 0.0 and perfect["mel_l1"] == 0.0
    assert perfect["ref_nll_nats"] == rows[1]["ref_nll_nats"] and math.isfinite(perfect["ref_nll_nats"])
    assert notes == [f"{gen / 'slow.wav'} is 22050 Hz; resampling to {SAMPLE_RATE} Hz"]
    assert [p for p, _ in failed] == [refs / "bad.wav"] and "bad.wav" in failed[0][1]

    summary = evaluation.summarize(
        rows,
        vocoder,
        checkpoint="tiny.pt",
        generated_dir=gen,
        num_references=len(references),
        failed=failed,
        griffin_lim_iters=2,
    )
    assert summary["num_references"] == 3 and summary["num_evaluated"] == 2
    assert set(summary["systems"]) == {"waveflow", "griffin_lim"}
    mel_l1 = [r["mel_l1"] for r in rows if r["system"] == "waveflow"]
    assert summary["systems"]["waveflow"]["mel_l1"] == {"mean": pytest.approx(np.mean(mel_l1)), "count": 2}
    assert summary["failed"] == [{"path": str(refs / "bad.wav"), "reason": failed[0][1]}]
    assert summary["config"]["griffin_lim"] == {"enabled": True, "n_iter": 2, "random_state": 0}

    evaluation.write_metrics_csv(tmp_path / "metrics.csv", rows)
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [(r["file"], r["system"]) for r in csv.DictReader(f)] == [
            (r["file"], r["system"]) for r in rows
        ]
    summary["systems"]["waveflow"]["stoi"]["mean"] = float("nan")  # NaN is not JSON: null
    evaluation.write_summary(tmp_path / "summary.json", summary)
    assert json.loads((tmp_path / "summary.json").read_text())["systems"]["waveflow"]["stoi"]["mean"] is None


def test_evaluate_file_without_griffin_lim(vocoder, tmp_path):
    audio = write_speech_wav(tmp_path / "ref.wav", 8000)
    write_wav(tmp_path / "gen.wav", 0.5 * audio, SAMPLE_RATE)
    rows = evaluation.evaluate_file(vocoder, tmp_path / "ref.wav", tmp_path / "gen.wav", griffin_lim=False)
    assert len(rows) == 1 and rows[0]["system"] == "waveflow" and set(METRIC_NAMES) <= set(rows[0])
    assert rows[0]["mrstft"] > 0.0
    assert evaluation.generated_path("gen", "refs/ref.flac").as_posix() == "gen/ref.wav"
