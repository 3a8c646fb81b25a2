"""Training when things go wrong: a full disk, unreadable checkpoints on resume, non-finite weights.

A full disk is simulated in-process: from the N-th write of a kind on, the write raises
``OSError(ENOSPC)``, as a full file system keeps doing until space is freed.
"""

from __future__ import annotations

import errno
import math
import re

import pytest
import torch

import waveflow.train.yaml_config
from tests.train.conftest import load, read_log, same_tensors, train_losses
from waveflow.cli import main
from waveflow.errors import CheckpointError
from waveflow.model import WaveGlow
from waveflow.train import TrainingDivergedError, train
from waveflow.train import loop as loop_module

NO_VAL = "data.validation_files="


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class _FullAfter:
    """A file object that takes ``budget`` bytes, then fails like a full disk."""

    def __init__(self, handle, budget: int):
        self.handle, self.budget = handle, budget

    def write(self, data) -> int:
        if len(data) > self.budget:
            raise _enospc()
        self.budget -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _fill_disk_at_checkpoint(monkeypatch, nth: int, how: str) -> None:
    """From the ``nth`` checkpoint write on, ``torch.save`` fails: at once with ``OSError``
    (``how="oserror"``), or part-way, as torch's zip writer reports it: a ``RuntimeError``
    raised while handling the file's ``OSError`` (``how="zip_writer"``)."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < nth:
            return real_save(obj, f, *args, **kwargs)
        if how == "oserror":
            raise _enospc()
        return real_save(obj, _FullAfter(f, 5000), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def _fill_disk_at_log_line(monkeypatch, nth: int) -> None:
    """From the ``nth`` line of ``train_log.jsonl`` on, writing the line fails."""
    real_init, lines = loop_module.RunLogger.__init__, []

    class FullLog:
        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            lines.append(text)
            if len(lines) >= nth:
                raise _enospc()
            return self.handle.write(text)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if self._jsonl is not None:
            self._jsonl = FullLog(self._jsonl)

    monkeypatch.setattr(loop_module.RunLogger, "__init__", init)


def _fill_disk_at_tensorboard(monkeypatch, nth: int) -> None:
    """From the ``nth`` TensorBoard record on, the event writer's thread fails to write."""
    tb_record_writer = pytest.importorskip("tensorboard.summary.writer.record_writer")
    real_write, records = tb_record_writer.RecordWriter.write, []

    def write(self, data):
        records.append(1)
        if len(records) >= nth:
            raise _enospc()
        return real_write(self, data)

    monkeypatch.setattr(tb_record_writer.RecordWriter, "write", write)


def _snapshot(run_dir):
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "tensorboard" not in p.parts
    }


@pytest.mark.parametrize(
    ("site", "how"),
    [("checkpoint", "oserror"), ("checkpoint", "zip_writer"), ("log", None), ("tensorboard", None)],
)
def test_a_full_disk_stops_with_one_line_and_resume_continues_exactly(tiny, monkeypatch, capsys, site, how):
    # Before: a traceback (exit 1) or, for a plain OSError, a line naming no file.
    common = ["train.max_steps=6", "train.checkpoint_every=2", "train.keep_last=5", NO_VAL]
    train(tiny.config(*common), tiny.run_dir("one_go"))

    run = tiny.run_dir("full")
    if site == "checkpoint":
        _fill_disk_at_checkpoint(monkeypatch, 2, how)  # the step-4 checkpoint
        expected = r"cannot write checkpoint \S*ckpt_00000004.pt: no space left on device"
    elif site == "log":
        _fill_disk_at_log_line(monkeypatch, 5)  # start, train 1-2, checkpoint 2, train 3 <- fails
        expected = r"cannot write the training log \S*train_log.jsonl: no space left on device"
    else:
        _fill_disk_at_tensorboard(monkeypatch, 8)
        expected = r"cannot write TensorBoard events in \S*tensorboard: no space left on device"
    code = main(["train", "--config", str(tiny.config_path), "--run-dir", str(run), *common])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("waveflow train: error: cannot write"), err
    assert re.search(expected, last_line), last_line
    assert "continue with --resume" in last_line, last_line

    # No partial file; every checkpoint written is complete and loadable; last.pt is the newest.
    checkpoints = run / "checkpoints"
    assert not [p.name for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    steps = sorted(p.name for p in checkpoints.glob("ckpt_*.pt"))
    assert steps, "the checkpoint written before the disk filled up is kept"
    if site == "checkpoint":
        assert steps == ["ckpt_00000002.pt"]
    newest = load(checkpoints / steps[-1])
    assert same_tensors(load(checkpoints / "last.pt").state_dict, newest.state_dict)
    assert all(math.isfinite(v) for v in (t.float().abs().max().item() for t in newest.state_dict.values()))

    monkeypatch.undo()  # space freed
    assert main(["train", "--run-dir", str(run), "--resume"]) == 0, capsys.readouterr().err
    expected = train_losses(tiny.run_dir("one_go"))
    if site == "log":  # the step-3 line never reached the full disk; its checkpoint did
        assert load(checkpoints / "ckpt_00000003.pt").training_state["trainer"]["step"] == 3
        del expected[3]
    assert train_losses(run) == expected
    a, b = load(tiny.run_dir("one_go") / "checkpoints" / "last.pt"), load(checkpoints / "last.pt")
    assert b.training_state["trainer"]["step"] == 6
    assert same_tensors(a.state_dict, b.state_dict)


def test_resume_on_a_still_full_disk_is_one_line_and_changes_nothing(tiny, monkeypatch, capsys):
    run = tiny.run_dir()
    train(tiny.config("train.max_steps=2", "train.checkpoint_every=2", NO_VAL), run)
    before = _snapshot(run)

    def full(path, text):
        raise _enospc()

    monkeypatch.setattr(waveflow.train.yaml_config, "atomic_write_text", full)
    code = main(["train", "--run-dir", str(run), "--resume", "train.max_steps=4"])
    err = capsys.readouterr().err
    assert code == 4 and "Traceback" not in err, err
    assert re.search(r"cannot write the run's config \S*config.yaml: no space left on device", err), err
    assert _snapshot(run) == before


def _corrupt(path, data: bytes = b"not a checkpoint") -> None:
    """Overwrite ``path`` in place (a hard link to it, such as last.pt, sees the garbage too)."""
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()


def test_resume_refuses_when_no_checkpoint_can_be_read_and_changes_nothing(tiny, capsys):
    # Before: a warning per file, then a new run from step 0 in the same directory, overwriting
    # ckpt_00000002.pt and last.pt and pruning the rest.
    run = tiny.run_dir()
    train(tiny.config("train.max_steps=4", "train.checkpoint_every=2"), run)  # with best.pt
    checkpoints = run / "checkpoints"
    for path in checkpoints.iterdir():
        _corrupt(path)
    before = _snapshot(run)

    code = main(["train", "--run-dir", str(run), "--resume", "train.max_steps=6"])
    err = capsys.readouterr().err
    assert code == 3, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("waveflow train: error: cannot resume: none of the 4 checkpoint(s)"), err
    for name in ("ckpt_00000004.pt", "ckpt_00000002.pt", "last.pt", "best.pt"):
        assert name in last_line
    assert "Nothing was changed" in last_line and "another --run-dir" in last_line
    assert "Traceback" not in err
    assert _snapshot(run) == before
    with pytest.raises(CheckpointError, match="none of the 4 checkpoint"):
        train(tiny.config("train.max_steps=6"), run, resume=True)
    assert _snapshot(run) == before


def test_resume_skips_unreadable_checkpoints_names_them_and_keeps_them(tiny, capsys):
    common = ["train.checkpoint_every=2", "train.keep_last=3", NO_VAL]
    train(tiny.config(*common, "train.max_steps=8"), tiny.run_dir("one_go"))
    run = tiny.run_dir()
    train(tiny.config(*common, "train.max_steps=6"), run)
    checkpoints = run / "checkpoints"
    _corrupt(checkpoints / "ckpt_00000006.pt")  # last.pt is the same file: unreadable too
    capsys.readouterr()

    # One checkpoint per step and keep_last=1: pruning runs at every step of the resumed run.
    result = train(
        tiny.config(*common, "train.max_steps=8", "train.checkpoint_every=1", "train.keep_last=1"),
        run,
        resume=True,
    )
    err = capsys.readouterr().err
    assert "resuming from" in err and "ckpt_00000004.pt" in err
    assert "skipping 1 newer checkpoint(s) that cannot be read: ckpt_00000006.pt" in err
    assert read_log(run)[-1]["status"] == "completed" and result.step == 8
    starts = [r for r in read_log(run) if r["event"] == "start"]
    assert starts[-1]["resumed_from"].endswith("ckpt_00000004.pt")
    assert train_losses(run) == train_losses(tiny.run_dir("one_go"))
    a, b = load(tiny.run_dir("one_go") / "checkpoints" / "last.pt"), load(checkpoints / "last.pt")
    assert same_tensors(a.state_dict, b.state_dict)
    # The unreadable ckpt_6 was replaced when the run wrote step 6 again, then pruned as usual.
    assert sorted(p.name for p in checkpoints.glob("ckpt_*.pt")) == ["ckpt_00000008.pt"]


def _nan_after_optimizer_step(monkeypatch, bad_step: int) -> None:
    """After the ``bad_step``-th optimizer step (1-based), a NaN appears in one parameter, as a
    corrupt Adam state or an overflowing update would leave it, with loss and gradients finite."""
    real_step, calls = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == bad_step:
            with torch.no_grad():
                self.param_groups[0]["params"][3].view(-1)[0] = math.nan
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)


def test_the_guard_stops_on_non_finite_parameters_without_saving_them(tiny, monkeypatch, capsys):
    # Before: the guard looked only at the loss and the gradient norm; the NaN weights trained on
    # (every later loss NaN, every step skipped) and were saved in the checkpoints.
    _nan_after_optimizer_step(monkeypatch, 3)
    run = tiny.run_dir()
    args = ["train", "--config", str(tiny.config_path), "--run-dir", str(run)]
    code = main([*args, "train.max_steps=6", "train.checkpoint_every=2", "train.ema_decay=0.9", NO_VAL])
    err = capsys.readouterr().err
    assert code == 1, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith(
        "waveflow train: training stopped at step 3: the optimizer step left non-finite"
    )
    names = [n for n, _ in WaveGlow.from_config(tiny.config().model).named_parameters()]
    assert f"values in 1 parameter(s) ({names[3]})" in last_line, last_line
    assert "These weights were not saved" in last_line and "ckpt_00000002.pt" in last_line
    assert "Traceback" not in err
    # Nothing non-finite on disk: the crash checkpoint of step 3 was not written.
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("ckpt_*.pt")) == ["ckpt_00000002.pt"]
    for path in (checkpoints / "ckpt_00000002.pt", checkpoints / "last.pt"):
        saved = load(path)
        tensors = [*saved.state_dict.values(), *saved.training_state["raw_state_dict"].values()]
        assert all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
    end = read_log(run)[-1]
    assert (end["event"], end["status"], end["step"]) == ("end", "diverged", 3)
    # The Python API raises; with no checkpoint yet, it says so.
    monkeypatch.undo()
    _nan_after_optimizer_step(monkeypatch, 1)
    with pytest.raises(TrainingDivergedError, match="No checkpoint had been written yet"):
        train(tiny.config("train.max_steps=3", NO_VAL), tiny.run_dir("api"))
    assert not list((tiny.run_dir("api") / "checkpoints").glob("*.pt"))
