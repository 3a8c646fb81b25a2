"""Training runs on the CPU with a tiny model: learning, exact resume, NaN guard, refusals, bad configs."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
import yaml

import waveflow.losses
from tests.train.conftest import base_config, load, read_log, same_tensors, train_losses, write_corpus
from waveflow.cli import main
from waveflow.config import ExperimentConfig
from waveflow.train import TrainingDivergedError, load_config, train
from waveflow.train import loop as loop_module


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    # Clips exactly one segment long: every step sees the same 4 crops (only the dequantisation
    # noise and the order change), so the loss must go down steadily.
    train_list = write_corpus(tmp_path, [2048] * 4, "fixed")
    data = base_config(train_list, train_list)
    data["train"].update(
        batch_size=4, max_steps=30, learning_rate=1e-3, validate_every=30, checkpoint_every=30
    )
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "c.yaml")
    result = train(config, tmp_path / "run")

    losses = [train_losses(tmp_path / "run")[s] for s in range(1, 31)]
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.2, losses
    assert result.status == "completed" and result.step == 30
    log = read_log(tmp_path / "run")
    (val,) = [r for r in log if r["event"] == "val"]
    assert result.best_val_nll == pytest.approx(val["val_nll"]) and val["val_nll"] < 0.9
    record = next(r for r in log if r["event"] == "train")
    assert {"loss", "nll", "nvidia_loss", "lr", "grad_norm", "samples_per_s", "skipped"} <= record.keys()
    # NVIDIA's number omits the Gaussian constant: nll = nvidia_loss + log(sigma) + log(2 pi) / 2.
    assert record["nll"] - record["nvidia_loss"] == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-5)
    # The run directory: the resolved config reads back equal; the checkpoint knows its run.
    assert load_config(tmp_path / "run" / "config.yaml") == config
    ckpt = load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ExperimentConfig.from_dict(ckpt.metadata["experiment"]) == config
    assert ckpt.config.model == config.model and ckpt.config.mel == config.mel
    assert ckpt.training_state["trainer"]["step"] == 30
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_resume_reproduces_an_uninterrupted_run_exactly(tiny):
    # Constant LR with warmup (the schedule does not depend on max_steps); the first part ends
    # in the middle of an epoch (2 batches per epoch) and the second part uses worker processes.
    common = ["train.warmup_steps=3", "train.validate_every=4", "train.checkpoint_every=4"]
    n, m = 5, 6
    train(tiny.config(*common, f"train.max_steps={n + m}"), tiny.run_dir("one_go"))
    train(tiny.config(*common, f"train.max_steps={n}"), tiny.run_dir("resumed"))
    train(
        tiny.config(*common, f"train.max_steps={n + m}", "data.num_workers=2"),
        tiny.run_dir("resumed"),
        resume=True,
    )

    one_go, resumed = train_losses(tiny.run_dir("one_go")), train_losses(tiny.run_dir("resumed"))
    assert [resumed[s] for s in range(n + 1, n + m + 1)] == [one_go[s] for s in range(n + 1, n + m + 1)]
    a = load(tiny.run_dir("one_go") / "checkpoints" / "last.pt")
    b = load(tiny.run_dir("resumed") / "checkpoints" / "last.pt")
    assert a.training_state["trainer"]["step"] == b.training_state["trainer"]["step"] == n + m
    assert same_tensors(a.state_dict, b.state_dict)  # bitwise
    assert a.training_state["optimizer"]["state"].keys() == b.training_state["optimizer"]["state"].keys()
    for key, state in a.training_state["optimizer"]["state"].items():
        assert same_tensors(state, b.training_state["optimizer"]["state"][key])
    val = [
        [r["val_nll"] for r in read_log(tiny.run_dir(d)) if r["event"] == "val" and r["step"] > n]
        for d in ("one_go", "resumed")
    ]
    assert val[0] == val[1] and len(val[0]) == 2


def test_sigterm_saves_and_resume_continues_the_cosine_schedule(tiny, monkeypatch):
    common = [
        "train.max_steps=8",
        "train.lr_schedule=cosine",
        "train.checkpoint_every=100",
        "data.validation_files=",
    ]
    train(tiny.config(*common), tiny.run_dir("one_go"))

    original, calls = waveflow.losses.nll, []

    def nll_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # during step 3: the step completes, the loop stops before step 4
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(waveflow.losses, "nll", nll_then_signal)
    handler_before = signal.getsignal(signal.SIGTERM)
    result = train(tiny.config(*common), tiny.run_dir("stopped"))
    monkeypatch.setattr(waveflow.losses, "nll", original)
    assert (result.status, result.step, result.signal) == ("interrupted", 3, signal.SIGTERM)
    assert result.checkpoint == tiny.run_dir("stopped") / "checkpoints" / "ckpt_00000003.pt"
    assert signal.getsignal(signal.SIGTERM) is handler_before  # handlers restored

    assert (
        main(["train", "--run-dir", str(tiny.run_dir("stopped")), "--resume"]) == 0
    )  # config from the run dir
    assert train_losses(tiny.run_dir("stopped")) == train_losses(tiny.run_dir("one_go"))
    a = load(tiny.run_dir("one_go") / "checkpoints" / "last.pt")
    b = load(tiny.run_dir("stopped") / "checkpoints" / "last.pt")
    assert same_tensors(a.state_dict, b.state_dict)


def _nan_at_batch(monkeypatch, bad_batch: int) -> None:
    """Replace the ``bad_batch``-th training batch (1-based, over the whole run) with NaN audio."""
    real_loader, drawn = loop_module.epoch_loader, []

    def loader(*args, **kwargs):
        for audio in real_loader(*args, **kwargs):
            drawn.append(1)
            yield torch.full_like(audio, math.nan) if len(drawn) == bad_batch else audio

    monkeypatch.setattr(loop_module, "epoch_loader", loader)


def _nan_loss_at_calls(monkeypatch, bad_calls) -> None:
    original, calls = waveflow.losses.nll, []

    def nll(*args, **kwargs):
        calls.append(1)
        out = original(*args, **kwargs)
        return out * math.nan if len(calls) in bad_calls else out

    monkeypatch.setattr(waveflow.losses, "nll", nll)


@pytest.mark.parametrize("cause", ["nan_audio", "nan_loss"])
def test_a_non_finite_step_changes_nothing_and_is_counted(tiny, monkeypatch, cause):
    if cause == "nan_audio":
        _nan_at_batch(monkeypatch, 3)
    else:
        _nan_loss_at_calls(monkeypatch, {3})
    overrides = [
        "train.max_steps=5",
        "train.checkpoint_every=1",
        "train.keep_last=10",
        "data.validation_files=",
    ]
    result = train(tiny.config(*overrides), tiny.run_dir())
    assert result.status == "completed"

    ckpt = {s: load(tiny.run_dir() / "checkpoints" / f"ckpt_{s:08d}.pt") for s in (2, 3, 4)}
    assert same_tensors(ckpt[2].state_dict, ckpt[3].state_dict)  # step 3 changed no weight ...
    opt2, opt3 = ckpt[2].training_state["optimizer"]["state"], ckpt[3].training_state["optimizer"]["state"]
    assert all(same_tensors(opt2[k], opt3[k]) for k in opt2)  # ... and no optimizer state (Adam's step)
    assert not same_tensors(ckpt[3].state_dict, ckpt[4].state_dict)  # step 4 trained again
    counters = {s: ckpt[s].training_state["trainer"] for s in (2, 3, 4)}
    field = "nonfinite_batches" if cause == "nan_audio" else "nonfinite_steps"
    assert [counters[s][field] for s in (2, 3, 4)] == [0, 1, 1]
    assert [counters[s]["consecutive_nonfinite"] for s in (2, 3, 4)] == [0, 1, 0]
    records = {r["step"]: r for r in read_log(tiny.run_dir()) if r["event"] == "train"}
    assert records[3]["skipped"] == 1 and records[3]["loss"] is None
    assert records[4]["skipped"] == 0 and math.isfinite(records[4]["loss"])


def test_too_many_non_finite_steps_stop_with_the_last_good_weights(tiny, monkeypatch, capsys):
    _nan_loss_at_calls(monkeypatch, set(range(3, 100)))
    args = ["train", "--config", str(tiny.config_path), "--run-dir", str(tiny.run_dir())]
    overrides = [
        "train.max_steps=20",
        "train.max_nonfinite_steps=3",
        "train.checkpoint_every=2",
        "data.validation_files=",
    ]
    assert main(args + overrides) == 1
    err = capsys.readouterr().err
    assert "3 steps in a row" in err and "train.max_nonfinite_steps=3" in err and "ckpt_00000005.pt" in err

    checkpoints = tiny.run_dir() / "checkpoints"
    last, good = load(checkpoints / "last.pt"), load(checkpoints / "ckpt_00000002.pt")
    assert last.training_state["trainer"]["step"] == 5  # 2 good steps, then 3 skipped ones
    assert same_tensors(last.state_dict, good.state_dict)
    end = read_log(tiny.run_dir())[-1]
    assert (end["event"], end["status"], end["step"]) == ("end", "diverged", 5)
    # The Python API raises instead of returning.
    with pytest.raises(TrainingDivergedError, match="last good weights"):
        train(tiny.config(*overrides), tiny.run_dir("api"))


def test_an_existing_run_is_never_overwritten(tiny, capsys):
    run = tiny.run_dir()
    train(tiny.config("train.max_steps=2", "data.validation_files="), run)
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    log_before = (run / "train_log.jsonl").read_text()
    code = main(["train", "--config", str(tiny.config_path), "--run-dir", str(run), "train.max_steps=4"])
    assert code == 2
    assert "already holds a training run; pass --resume" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before
    assert (run / "train_log.jsonl").read_text() == log_before
    # Resuming a model with other settings is refused, naming the setting.
    with pytest.raises(ValueError, match=r"model.wavenet.n_channels: 16 -> 32"):
        train(tiny.config("model.wavenet.n_channels=32"), run, resume=True)
    # --resume in an empty directory starts a new run.
    assert train(tiny.config("train.max_steps=1"), tiny.run_dir("fresh"), resume=True).step == 1


def _bad_inputs(tiny):
    missing_wav = tiny.root / "missing.txt"
    missing_wav.write_text("wavs/train0.wav\nwavs/not_there.wav\n")
    yaml_typo = tiny.root / "typo.yaml"
    yaml_typo.write_text(
        yaml.safe_dump({**yaml.safe_load(tiny.config_path.read_text()), "train": {"max_stepz": 3}})
    )
    return [
        (yaml_typo, [], "'train.max_stepz'"),
        (tiny.config_path, ["model.wavenet.n_layerz=2"], "'model.wavenet.n_layerz'"),
        (
            tiny.config_path,
            ["data.segment_length=2046"],
            "data.segment_length (2046) must be divisible by model.n_group (4)",
        ),
        (tiny.config_path, [f"data.training_files={tiny.root / 'nope.txt'}"], "nope.txt"),
        (tiny.config_path, [f"data.validation_files={tiny.root / 'nope_val.txt'}"], "nope_val.txt"),
        (tiny.config_path, [f"data.training_files={missing_wav}"], "not_there.wav"),
        (tiny.config_path, ["train.batch_size=6"], "fewer than train.batch_size=6"),
    ]


def test_bad_configs_fail_before_anything_is_written(tiny, capsys):
    for config_path, overrides, expected in _bad_inputs(tiny):
        run = tiny.run_dir()
        code = main(["train", "--config", str(config_path), "--run-dir", str(run), *overrides])
        err = capsys.readouterr().err
        assert code == 2, (overrides, err)
        assert expected in err, (overrides, err)
        assert err.startswith("waveflow train: error:") and "Traceback" not in err, err
        assert not run.exists(), overrides


def test_tensorboard_gets_scalars_audio_and_mel_images(tiny):
    pytest.importorskip("tensorboard", reason="TensorBoard logging is optional (pip install waveflow[train])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(
        tiny.config("train.max_steps=2", "train.validate_every=2", "train.num_audio_samples=1"),
        tiny.run_dir(),
    )
    events = EventAccumulator(str(tiny.run_dir() / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/nvidia_loss", "train/grad_norm", "val/val_nll"} <= set(tags["scalars"])
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(
        list(train_losses(tiny.run_dir()).values())
    )
    assert tags["audio"] == ["generated/val0", "target/val0"]  # num_audio_samples=1: the first utterance
    assert set(tags["images"]) == {"generated_mel/val0", "target_mel/val0"}
    (audio,) = events.Audio("generated/val0")
    assert audio.sample_rate == 8000 and audio.step == 2


def test_an_unexpected_crash_keeps_the_last_completed_step(tiny, monkeypatch):
    """A data loader that dies mid-run (e.g. a worker killed) raises, but the steps done are saved
    and a resume reproduces the uninterrupted run exactly."""
    overrides = ["train.max_steps=7", "train.checkpoint_every=100", "data.validation_files="]
    train(tiny.config(*overrides), tiny.run_dir("one_go"))

    real_loader, drawn = loop_module.epoch_loader, []

    def dying_loader(*args, **kwargs):
        for audio in real_loader(*args, **kwargs):
            drawn.append(1)
            if len(drawn) == 5:
                raise RuntimeError("DataLoader worker (pid 1234) is killed by signal: Killed.")
            yield audio

    monkeypatch.setattr(loop_module, "epoch_loader", dying_loader)
    with pytest.raises(RuntimeError, match="worker"):
        train(tiny.config(*overrides), tiny.run_dir("crashed"))
    saved = load(tiny.run_dir("crashed") / "checkpoints" / "last.pt")
    assert saved.training_state["trainer"]["step"] == 4  # steps 1-4 completed, 5 never started

    monkeypatch.setattr(loop_module, "epoch_loader", real_loader)
    train(tiny.config(*overrides), tiny.run_dir("crashed"), resume=True)
    assert train_losses(tiny.run_dir("crashed")) == train_losses(tiny.run_dir("one_go"))
    a = load(tiny.run_dir("one_go") / "checkpoints" / "last.pt")
    b = load(tiny.run_dir("crashed") / "checkpoints" / "last.pt")
    assert same_tensors(a.state_dict, b.state_dict)
