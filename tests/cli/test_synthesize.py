"""``waveflow synthesize``: input layouts, bad files, reproducibility, batching, lengths."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import soundfile as sf
import torch

from tests.cli.conftest import MEL, SAMPLE_RATE, mel_of, speech_mel
from tests.helpers import speech_like
from waveflow import cli
from waveflow.audio.io import load_audio
from waveflow.cli._inputs import file_seed
from waveflow.infer.vocoder import Vocoder

HOP = MEL.hop_length


def _frames(path) -> int:
    return sf.info(path).frames


def test_every_input_layout(checkpoint, tmp_path):
    mels = {name: speech_mel(2000 + 700 * i, seed=i) for i, name in enumerate("abcdefg")}
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    np.save(src / "a.npy", mels["a"])  # (n_mels, T)
    np.save(src / "b.npy", mels["b"][None])  # (1, n_mels, T)
    torch.save(torch.from_numpy(mels["c"]), src / "c.pt")
    np.savez(src / "d.npz", mel=mels["d"])
    np.savez(src / "e.npz", mels["e"])  # a single unnamed array
    np.save(src / "sub" / "f.npy", mels["f"])  # found by searching the folder
    listed = tmp_path / "listed"
    listed.mkdir()
    np.save(listed / "g.npy", mels["g"])
    (tmp_path / "list.txt").write_text("# mels\nlisted/g.npy\n\n")

    out = tmp_path / "out"
    argv = ["synthesize", str(checkpoint), str(src / "*.npy"), str(src / "c.pt"), str(src / "d.npz")]
    argv += [str(src / "e.npz"), str(src / "sub"), "--filelist", str(tmp_path / "list.txt"), "-o", str(out)]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.wav" for n in "abcdefg"]
    for name, mel in mels.items():
        info = sf.info(out / f"{name}.wav")
        assert (info.samplerate, info.subtype, info.channels) == (SAMPLE_RATE, "PCM_16", 1)
        assert info.frames == mel.shape[1] * HOP


def test_time_first_layout(checkpoint, tmp_path):
    mel = speech_mel(3000)
    np.save(tmp_path / "t.npy", mel.T)  # (T, n_mels)
    np.save(tmp_path / "u.npy", mel.T[None])  # (1, T, n_mels)
    out = tmp_path / "out"
    options = ["-o", str(out), "--seed", "3"]
    t, u = str(tmp_path / "t.npy"), str(tmp_path / "u.npy")
    assert cli.main(["synthesize", str(checkpoint), t, u, *options, "--time-first"]) == 0
    assert _frames(out / "t.wav") == _frames(out / "u.wav") == mel.shape[1] * HOP
    # Same values, so the same audio as a channel-first file of the same name.
    (tmp_path / "cf").mkdir()
    np.save(tmp_path / "cf" / "t.npy", mel)
    argv = ["synthesize", str(checkpoint), str(tmp_path / "cf" / "t.npy"), "-o", str(tmp_path / "cf_out")]
    assert cli.main([*argv, "--seed", "3"]) == 0
    assert (out / "t.wav").read_bytes() == (tmp_path / "cf_out" / "t.wav").read_bytes()


def test_bad_files_are_reported_and_the_rest_written(checkpoint, tmp_path, capsys):
    good = [tmp_path / f"good{i}.npy" for i in range(2)]
    for i, path in enumerate(good):
        np.save(path, speech_mel(3000, seed=i))
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY not really" * 4)
    np.save(tmp_path / "wrong_mels.npy", np.zeros((30, 20), np.float32))
    nan_mel = speech_mel(3000)
    nan_mel[3, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan_mel)
    np.save(tmp_path / "cube.npy", np.zeros((2, 40, 10), np.float32))
    out = tmp_path / "out"

    code = cli.main(
        ["synthesize", str(checkpoint), str(tmp_path / "*.npy"), "-o", str(out), "--batch-size", "3"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good0.wav", "good1.wav"]  # no partial or temp files
    assert "4 of 6 file(s) failed" in err
    assert "corrupt.npy: not a readable .npy file" in err
    assert "wrong_mels.npy: has shape (30, 20)" in err and "n_mels=40" in err
    assert "nan.npy: contains 1 NaN/Inf" in err
    assert "cube.npy: has shape (2, 40, 10)" in err
    assert "Traceback" not in err


def test_time_major_file_gets_a_hint(checkpoint, tmp_path, capsys):
    np.save(tmp_path / "tm.npy", speech_mel(3000).T)
    assert cli.main(["synthesize", str(checkpoint), str(tmp_path / "tm.npy"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --time-first" in err[0]
    assert not (tmp_path / "o" / "tm.wav").exists()


def test_seed_reproduces_identical_files_and_matches_the_python_api(checkpoint, tmp_path):
    mel = speech_mel(4000)
    np.save(tmp_path / "m.npy", mel)
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert (
            cli.main(
                [
                    "synthesize",
                    str(checkpoint),
                    str(tmp_path / "m.npy"),
                    "-o",
                    str(tmp_path / name),
                    "--seed",
                    seed,
                ]
            )
            == 0
        )
        runs[name] = (tmp_path / name / "m.wav").read_bytes()
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    # The documented noise: the file's own generator, seeded from (seed, file name).
    vocoder = Vocoder.from_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(file_seed(5, "m.npy"))
    expected, _ = vocoder(mel, sigma=0.6, generator=generator)
    written, _ = load_audio(tmp_path / "a" / "m.wav")
    assert np.abs(written - expected[0].numpy().clip(-1, 1)).max() <= 1 / 32768


def test_batching_gives_the_same_audio_as_one_by_one(checkpoint, tmp_path):
    for i, num_samples in enumerate((3000, 3000, 4100, 5200, 2500)):
        np.save(tmp_path / f"m{i}.npy", speech_mel(num_samples, seed=i))
    outputs = {}
    for batch_size in ("1", "3"):
        out = tmp_path / f"out{batch_size}"
        argv = [
            "synthesize",
            str(checkpoint),
            str(tmp_path),
            "-o",
            str(out),
            "--seed",
            "11",
            "--batch-size",
            batch_size,
        ]
        assert cli.main(argv) == 0
        outputs[batch_size] = {p.name: load_audio(p)[0] for p in sorted(out.iterdir())}
    assert outputs["1"].keys() == outputs["3"].keys() and len(outputs["1"]) == 5
    for name, audio in outputs["1"].items():
        # Equal up to float rounding, i.e. at most one 16-bit step after quantisation.
        assert np.abs(audio - outputs["3"][name]).max() <= 1 / 32768, name


def test_input_errors_exit_2_with_one_line(checkpoint, tmp_path, capsys):
    np.save(tmp_path / "m.npy", speech_mel(2000))
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("not a checkpoint")
    cases = {
        "checkpoint not found": [
            "synthesize",
            str(tmp_path / "missing.pt"),
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path),
        ],
        "not a PyTorch checkpoint": [
            "synthesize",
            str(not_ckpt),
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path),
        ],
        "not found: " + str(tmp_path / "nope.npy"): [
            "synthesize",
            str(checkpoint),
            str(tmp_path / "nope.npy"),
            "-o",
            str(tmp_path),
        ],
        "no .npy/.pt/.npz files match": [
            "synthesize",
            str(checkpoint),
            str(tmp_path / "*.zzz"),
            "-o",
            str(tmp_path),
        ],
        "--batch-size must be >= 1": [
            "synthesize",
            str(checkpoint),
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path),
            "--batch-size",
            "0",
        ],
    }
    for expected, argv in cases.items():
        code = 3 if expected == "not a PyTorch checkpoint" else 2  # a bad checkpoint: its own code
        assert cli.main(argv) == code, expected
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and err[0].startswith("waveflow synthesize: error:"), err


def test_duplicate_stems_are_refused(checkpoint, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    np.save(tmp_path / "m.npy", speech_mel(2000))
    np.save(tmp_path / "x" / "m.npy", speech_mel(2000))
    assert cli.main(["synthesize", str(checkpoint), str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "same name stem 'm'" in capsys.readouterr().err


def test_subprocess_entry_point(checkpoint, tmp_path):
    np.save(tmp_path / "m.npy", speech_mel(2000))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "waveflow",
            "synthesize",
            str(checkpoint),
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "m.wav").is_file()
    assert "x real time" in done.stderr
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "waveflow",
            "synthesize",
            str(tmp_path / "no.pt"),
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip() == f"waveflow synthesize: error: checkpoint not found: {tmp_path / 'no.pt'}"


def test_mel_convention_notes_once_per_file(checkpoint, tmp_path, capsys):
    # Speech followed by digital silence: the floor shows where the log base gives itself away.
    def with_silence(seed: int) -> np.ndarray:
        return mel_of(np.concatenate([speech_like(6000, SAMPLE_RATE, seed), np.zeros(3000, np.float32)]))

    for i in range(3):
        np.save(tmp_path / f"log10_{i}.npy", with_silence(i) / np.log(10))  # ln -> log10 values
    np.save(tmp_path / "fine.npy", with_silence(5))
    argv = ["synthesize", str(checkpoint), str(tmp_path), "-o", str(tmp_path / "out"), "--batch-size", "4"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if line.startswith("note:") and "clipped in" not in line]  # not clipping
    assert sorted(line.split(":")[1].strip().rsplit("/", 1)[-1] for line in notes) == [
        f"log10_{i}.npy" for i in range(3)
    ]


def test_engines_write_the_same_audio(checkpoint, tmp_path, capsys):
    np.save(tmp_path / "m.npy", speech_mel(4000))
    written = {}
    for engine in ("auto", "fast", "plain"):
        argv = ["synthesize", str(checkpoint), str(tmp_path / "m.npy"), "-o", str(tmp_path / engine)]
        assert cli.main(argv + ["--seed", "3", "--engine", engine]) == 0
        written[engine] = load_audio(tmp_path / engine / "m.wav")[0]
    for engine in ("auto", "fast"):
        assert np.abs(written[engine] - written["plain"]).max() <= 1 / 32768, engine
    capsys.readouterr()
    argv = ["synthesize", str(checkpoint), str(tmp_path / "m.npy"), "-o", str(tmp_path / "x")]
    assert cli.main(argv + ["--engine", "fast", "--precision", "bf16"]) == 2
    assert "engine='fast' runs on the CPU in fp32" in capsys.readouterr().err
