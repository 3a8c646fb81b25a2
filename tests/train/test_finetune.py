"""Fine-tuning: ``train.init_from`` (waveflow, NVIDIA and registered sources) and ``data.mel_dir``
(teacher-forced mels), on tiny runs and on the shipped default model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from tests.helpers import read_log, speech_like, torch_threads, train_losses
from tests.train.conftest import MEL, SAMPLE_RATE, base_config, load, same_tensors, write_corpus
from waveflow import presets, pretrained
from waveflow.audio.features import MelSpectrogram
from waveflow.checkpoint import load_model, read_checkpoint
from waveflow.cli import main
from waveflow.config import ExperimentConfig, MelConfig
from waveflow.data import read_filelist
from waveflow.data.mel_dir import MelDir, MelSegmentDataset, fit_frames
from waveflow.errors import InputError
from waveflow.model import WaveGlow
from waveflow.train import load_config, train
from waveflow.train.init_from import InitFromMismatchError, read_init_weights

HOP = MEL["hop_length"]


# -- helpers ---------------------------------------------------------------------------------------
def write_config(path: Path, data: dict, *overrides: str) -> ExperimentConfig:
    path.write_text(yaml.safe_dump(data))
    return load_config(path, overrides)


def val_records(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["val_nll"] for r in read_log(run_dir) if r["event"] == "val"}


def write_mels(mel_dir: Path, filelist: Path, mel: MelConfig, transform=lambda m: m) -> None:
    """``mel_dir/<stem>.npy``: the mel front end's output on each whole file, through ``transform``."""
    mel_dir.mkdir(parents=True, exist_ok=True)
    mel_fn = MelSpectrogram.from_config(mel)
    for path in read_filelist(filelist):
        audio, _ = sf.read(path, dtype="float32")
        with torch.no_grad():
            spec = mel_fn(torch.from_numpy(audio)[None])[0].numpy()  # (n_mels, T // hop + 1)
        np.save(mel_dir / f"{path.stem}.npy", transform(spec).astype(np.float32))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, Path]:
    """A tiny corpus and a 12-step run with a weight average: ``ckpt`` is its last checkpoint."""
    root = tmp_path_factory.mktemp("source")
    train_list = write_corpus(root, [2500, 3000, 3500, 4000, 4500], "train")
    val_list = write_corpus(root, [3000, 5000], "val", seed=100)
    data = base_config(train_list, val_list)
    data["train"].update(max_steps=12, validate_every=100, checkpoint_every=12, ema_decay=0.9)
    with torch_threads(1):
        train(write_config(root / "source.yaml", data), root / "run")
    return {
        "root": root,
        "train": train_list,
        "val": val_list,
        "ckpt": root / "run" / "checkpoints" / "last.pt",
    }


def finetune_config(source: dict[str, Path], tmp_path: Path, *overrides: str) -> ExperimentConfig:
    data = base_config(source["train"], source["val"])
    data["train"].update(max_steps=2, validate_every=2, checkpoint_every=2, init_from=str(source["ckpt"]))
    return write_config(tmp_path / "finetune.yaml", data, *overrides)


# -- init_from ---------------------------------------------------------------------------------------
def test_finetuning_the_shipped_default_model_lowers_validation_nll(tmp_path: Path):
    shipped = read_checkpoint(pretrained.resolve("default"))
    assert shipped.config.model == presets.compact_source() and shipped.config.mel == presets.tacotron2_mel()
    # Synthetic speech the model never heard: 4 clips of 0.5 s to train on, one of 1 s to score.
    rate = shipped.config.mel.sample_rate
    (tmp_path / "wavs").mkdir()
    lists = {}
    for name, clips in {"train": [(11025, i) for i in range(4)], "val": [(22050, 100)]}.items():
        lines = []
        for num_samples, seed in clips:
            path = tmp_path / "wavs" / f"{name}{seed}.wav"
            sf.write(path, speech_like(num_samples, rate, seed=seed), rate, subtype="PCM_16")
            lines.append(f"{path}\n")
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text("".join(lines))
    data = {
        "model": shipped.config.model.to_dict(),
        "mel": shipped.config.mel.to_dict(),
        "data": {
            "training_files": str(lists["train"]),
            "validation_files": str(lists["val"]),
            "segment_length": 4096,
            "num_workers": 0,
            "validation_max_seconds": 1.0,
        },
        "train": {
            "init_from": "default",
            "batch_size": 2,
            "max_steps": 12,
            "learning_rate": 2e-4,
            "log_every": 5,
            "validate_every": 12,
            "checkpoint_every": 12,
            "device": "cpu",
        },
    }
    config = write_config(tmp_path / "c.yaml", data)
    assert config.train.init_from == "default"  # a registered name stays a name
    result = train(config, tmp_path / "run")

    val = val_records(tmp_path / "run")
    assert sorted(val) == [0, 12]  # the shipped weights are scored by the same validation first
    assert val[12] < val[0] - 0.2, val
    ckpt = load(tmp_path / "run" / "checkpoints" / "last.pt")
    record = ckpt.metadata["init_from"]
    assert record["spec"] == "default" and record["format"] == "waveflow" and record["weights"] == "average"
    assert record["sha256"] == pretrained.get("default").sha256 == pretrained.sha256_of(Path(record["path"]))
    # Weights only: a fresh optimizer (Adam's own step count is the run's) from step 0.
    assert ckpt.training_state["trainer"]["step"] == result.step == 12
    assert min(train_losses(tmp_path / "run")) == 5
    adam_steps = {float(s["step"]) for s in ckpt.training_state["optimizer"]["state"].values()}
    assert adam_steps == {12.0}
    (start,) = [r for r in read_log(tmp_path / "run") if r["event"] == "start"]
    assert start["init_from"] == record
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["init_from"] == "default"


def test_the_shipped_model_loads_into_a_weight_normed_training_model_unchanged():
    # The shipped file has weight norm folded; the training model splits each weight into g and v.
    config = ExperimentConfig(model=presets.compact_source(), mel=presets.tacotron2_mel()).replace(
        data=ExperimentConfig().data.replace(segment_length=4096)
    )
    init = read_init_weights("default", config)
    model = WaveGlow(config.model)
    init.load_into(model)
    assert any(".parametrizations.weight.original0" in k for k in model.state_dict())
    reference, _ = load_model(pretrained.resolve("default"))
    audio, mel = 0.1 * torch.randn(1, 4096), torch.randn(1, 80, 17)
    with torch.no_grad():
        (z, logdet), (z_ref, logdet_ref) = model.eval()(audio, mel), reference(audio, mel)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(logdet, logdet_ref, rtol=0, atol=1e-3)


def _nvidia_config() -> ExperimentConfig:
    """The fixture's architecture (NVIDIA's WaveGlow with a 2-layer, 32-channel WN) on Tacotron2 mels."""
    model = presets.waveglow_ljspeech()
    return ExperimentConfig(model=model.replace(wavenet=model.wavenet.replace(n_layers=2, n_channels=32)))


@pytest.mark.fixtures
@pytest.mark.parametrize("name", ["waveglow_orig_checkpoint.pt.xz", "waveglow_dle_hub_checkpoint.pt.xz"])
def test_nvidia_checkpoints_of_both_formats_initialise_the_model(nvidia_fixtures: Path, name: str):
    path = nvidia_fixtures / name
    init = read_init_weights(str(path), _nvidia_config())
    assert init.source_format == ("nvidia-original" if "orig" in name else "nvidia-dle")
    assert init.weights == "only" and init.notes == []  # Tacotron2 mels: nothing to report
    model = WaveGlow(_nvidia_config().model)
    init.load_into(model)
    reference, _ = load_model(path)
    assert same_tensors(model.state_dict(), reference.state_dict())


@pytest.mark.fixtures
def test_a_run_starts_from_an_nvidia_checkpoint(nvidia_fixtures: Path, tmp_path: Path):
    path = nvidia_fixtures / "waveglow_orig_checkpoint.pt.xz"
    rate = 22050
    (tmp_path / "wavs").mkdir()
    for i in range(2):
        sf.write(tmp_path / "wavs" / f"a{i}.wav", speech_like(4096, rate, seed=i), rate, subtype="PCM_16")
    (tmp_path / "train.txt").write_text("wavs/a0.wav\nwavs/a1.wav\n")
    data = _nvidia_config().to_dict()
    data["data"].update(training_files=str(tmp_path / "train.txt"), segment_length=2048, num_workers=0)
    data["train"].update(
        init_from=str(path), batch_size=2, max_steps=1, learning_rate=1e-4, checkpoint_every=1, device="cpu"
    )
    train(write_config(tmp_path / "c.yaml", data), tmp_path / "run")

    ckpt = load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt.metadata["init_from"]["format"] == "nvidia-original"
    assert ckpt.metadata["init_from"]["step"] == 2000  # NVIDIA's iteration
    reference, _ = load_model(path)
    # One Adam step moves every weight by at most the learning rate: the run began at NVIDIA's weights.
    ref = reference.state_dict()
    moved = max((ckpt.state_dict[k] - ref[k]).abs().max().item() for k in ref)
    assert 0 < moved <= 1.01e-4


def test_a_mismatched_architecture_is_refused_before_anything_is_written(source, tmp_path: Path, capsys):
    config = finetune_config(source, tmp_path, "model.wavenet.n_channels=8")
    with pytest.raises(InitFromMismatchError) as info:
        train(config, tmp_path / "run")
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert "model.wavenet.n_channels: checkpoint 16, run 8" in message
    assert "flow.steps.0.coupling.conditioner.start.bias: expected (8,), found (16,)" in message
    assert not (tmp_path / "run").exists()

    with pytest.raises(InitFromMismatchError, match=r"mel\.f_max: checkpoint 4000\.0, run 3000\.0"):
        train(finetune_config(source, tmp_path, "mel.f_max=3000"), tmp_path / "run")
    with pytest.raises(InputError, match="not a registered model .*default"):
        train(finetune_config(source, tmp_path, "train.init_from=no_such_model"), tmp_path / "run")
    assert not (tmp_path / "run").exists()

    # The command line: one line and the input error's exit code.
    argv = ["train", "--config", str(tmp_path / "finetune.yaml"), "--run-dir", str(tmp_path / "run")]
    assert main([*argv, "model.n_flows=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.n_flows: checkpoint 4, run 2" in err[0]


def test_the_weight_average_is_used_when_the_source_has_one(source, tmp_path: Path):
    ckpt = load(source["ckpt"])
    raw = ckpt.training_state["raw_state_dict"]
    assert not same_tensors(ckpt.state_dict, raw)  # the run averaged: two sets of weights
    init = read_init_weights(str(source["ckpt"]), finetune_config(source, tmp_path))
    assert init.weights == "average" and "weight average" in init.describe()
    model = WaveGlow(ckpt.config.model)
    init.load_into(model)
    assert same_tensors(model.state_dict(), ckpt.state_dict)


def test_resume_continues_the_run_and_does_not_initialise_again(source, tmp_path: Path, capsys):
    first = tmp_path / "first.pt"
    shutil.copy(source["ckpt"], first)
    overrides = (f"train.init_from={first}", "train.validate_every=3", "train.checkpoint_every=3")
    train(finetune_config(source, tmp_path, *overrides, "train.max_steps=6"), tmp_path / "one_go")
    train(finetune_config(source, tmp_path, *overrides, "train.max_steps=3"), tmp_path / "resumed")
    record = load(tmp_path / "resumed" / "checkpoints" / "last.pt").metadata["init_from"]
    first.write_bytes(b"not a checkpoint any more")  # reading it again would fail
    capsys.readouterr()
    train(
        finetune_config(source, tmp_path, *overrides, "train.max_steps=6"), tmp_path / "resumed", resume=True
    )

    assert "is not applied again" in capsys.readouterr().err
    one_go, resumed = train_losses(tmp_path / "one_go"), train_losses(tmp_path / "resumed")
    assert [resumed[s] for s in (4, 5, 6)] == [one_go[s] for s in (4, 5, 6)]
    a = load(tmp_path / "one_go" / "checkpoints" / "last.pt")
    b = load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert same_tensors(a.state_dict, b.state_dict)
    assert b.metadata["init_from"] == record == a.metadata["init_from"]
    assert record["path"] == str(first.resolve()) and len(record["sha256"]) == 64
    # The init_from weights were scored once, at step 0 of the first session.
    assert sorted(val_records(tmp_path / "resumed")) == [0, 3, 6]


# -- mel_dir -------------------------------------------------------------------------------------------
def test_training_crops_start_on_a_frame_and_take_the_frames_they_hold(source, tmp_path: Path):
    mel_config = MelConfig(**MEL)
    write_mels(tmp_path / "mels", source["train"], mel_config)
    files = read_filelist(source["train"])
    mels = MelDir(tmp_path / "mels", n_mels=16, hop_length=HOP, center=True)
    length = 2048
    dataset = MelSegmentDataset(files, SAMPLE_RATE, length, mels=mels, dequantize=False)
    mel_fn = MelSpectrogram.from_config(mel_config)
    starts = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            audio, mel = dataset[index]
            whole, _ = sf.read(dataset.files[index], dtype="float32")
            full_mel = np.load(tmp_path / "mels" / f"{dataset.files[index].stem}.npy")
            start = next(
                s for s in range(len(whole) - length + 1) if np.array_equal(whole[s : s + length], audio)
            )
            assert start % HOP == 0
            starts.add(start)
            assert mel.shape == (16, length // HOP + 1)  # what the mel of the crop has
            np.testing.assert_array_equal(
                mel.numpy(), full_mel[:, start // HOP : start // HOP + length // HOP + 1]
            )
            # Frames whose STFT window lies inside the crop are the crop's own mel: the same convention.
            with torch.no_grad():
                own = mel_fn(audio[None])[0].numpy()
            inner = slice(2, length // HOP - 1)  # n_fft 256 = 4 hops: 2 frames each side see padding
            np.testing.assert_allclose(mel.numpy()[:, inner], own[:, inner], atol=1e-4)
    assert len(starts) > 3


def test_mel_lengths_are_aligned_within_the_tolerance_and_problems_are_listed(tmp_path: Path):
    mel = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(fit_frames(mel, 4), mel[:, :4])  # longer: cut at the end
    np.testing.assert_array_equal(fit_frames(mel, 8)[:, 6:], mel[:, [5, 5]])  # shorter: last frame repeated

    folder = tmp_path / "mels"
    folder.mkdir()
    mels = MelDir(folder, n_mels=2, hop_length=10, center=True, frame_tolerance=2)
    audio = [tmp_path / f"{name}.wav" for name in ("ok", "short", "far", "bins", "gone")]
    np.save(folder / "ok.npy", np.zeros((2, 11), np.float32))  # 100 samples: 100 // 10 + 1 = 11 frames
    torch.save(torch.zeros(2, 9), folder / "short.pt")  # 2 frames short: allowed
    np.save(folder / "far.npy", np.zeros((2, 20), np.float32))
    np.save(folder / "bins.npy", np.zeros((3, 11), np.float32))
    with pytest.raises(InputError) as info:
        mels.read_all(audio, [100] * 5, "training files")
    message = str(info.value)
    assert "3 problem(s) with the mels of the 5 training files" in message
    assert "far.wav: its mel has 20 frames, but its 100 samples make 11" in message
    assert "data.mel_frame_tolerance=2" in message
    assert f"{folder / 'bins.npy'}: has shape (3, 11)" in message and "expects n_mels=2" in message
    assert f"missing: no mel for {audio[4]}" in message
    assert "short" not in message and "ok.npy" not in message
    loaded = mels.read_all(audio[:2], [100, 100], "training files")
    assert [m.shape for m in loaded] == [(2, 11), (2, 9)]
    with pytest.raises(ValueError, match="pad_noise cannot be used with data.mel_dir"):
        ExperimentConfig.from_dict({"data": {"mel_dir": str(folder), "short_clips": "pad_noise"}})


def test_training_and_validation_are_conditioned_on_the_given_mels(source, tmp_path: Path):
    mel_config = MelConfig(**MEL)
    for name, transform in (("exact", lambda m: m), ("shifted", lambda m: m + 3.0)):
        for filelist in (source["train"], source["val"]):
            write_mels(tmp_path / name, filelist, mel_config, transform)
    results = {}
    for name in ("computed", "exact", "shifted"):
        mel_dir = [] if name == "computed" else [f"data.mel_dir={tmp_path / name}"]
        run_dir = tmp_path / f"run_{name}"
        train(finetune_config(source, tmp_path, *mel_dir), run_dir)
        results[name] = (val_records(run_dir)[0], train_losses(run_dir)[1], val_records(run_dir)[2])
    computed, exact, shifted = (np.array(results[k]) for k in ("computed", "exact", "shifted"))
    # The mels of the whole files differ from the crops' own only at the edges; shifted ones a lot.
    assert np.abs(exact - computed).max() < 0.05 * np.abs(shifted - computed).min(), results
    assert np.abs(shifted - computed).min() > 0.02, results
    assert load_config(tmp_path / "run_exact" / "config.yaml").data.mel_dir == str(tmp_path / "exact")

    # A missing mel is named before anything is written.
    (tmp_path / "exact" / "val1.npy").unlink()
    with pytest.raises(InputError, match=r"missing: no mel for .*val1\.wav") as info:
        train(
            finetune_config(source, tmp_path, f"data.mel_dir={tmp_path / 'exact'}"), tmp_path / "run_missing"
        )
    assert "the 2 validation files" in str(info.value)
    assert not (tmp_path / "run_missing").exists()


def test_a_run_log_names_its_source(source, tmp_path: Path):
    train(finetune_config(source, tmp_path), tmp_path / "run")
    (start,) = [r for r in read_log(tmp_path / "run") if r["event"] == "start"]
    assert start["init_from"]["path"] == str(source["ckpt"].resolve())
    assert start["init_from"]["weights"] == "average" and start["init_from"]["step"] == 12
    assert json.dumps(start)  # plain values
