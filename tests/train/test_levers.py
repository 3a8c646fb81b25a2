"""Training levers: the weight average, the auxiliary STFT loss, the CPU-time budget, and the
compact flow training end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.train.conftest import load, read_log, same_tensors, train_losses
from waveflow import losses
from waveflow.train import train
from waveflow.train.ema import ExponentialMovingAverage

COMPACT = [  # the compact family at the tiny runs' mel (16 bands, hop 64)
    "model.conditioning=frame",
    "model.n_group=16",
    "model.n_early_size=4",
    "model.cond_channels=8",
    "model.wavenet.separable=true",
    "model.wavenet.dilation_cycle=2",
]


def test_average_follows_the_documented_formula_and_swaps_back():
    net = nn.Linear(3, 2)
    ema = ExponentialMovingAverage(net, decay=0.9)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # n = 1: decay min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], d * start + (1 - d) * (start + 1))
    trained = net.weight.detach().clone()
    with ema.applied(net):
        assert torch.equal(net.weight, ema.shadow["weight"])
    assert torch.equal(net.weight, trained)
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(net, decay=1.0)


def test_saved_model_is_the_average_and_resume_is_exact(tiny):
    common = ["train.ema_decay=0.8", "train.validate_every=4", "train.checkpoint_every=4"]
    train(tiny.config(*common, "train.max_steps=8"), tiny.run_dir("one_go"))
    train(tiny.config(*common, "train.max_steps=4"), tiny.run_dir("resumed"))
    train(tiny.config(*common, "train.max_steps=8"), tiny.run_dir("resumed"), resume=True)
    a = load(tiny.run_dir("one_go") / "checkpoints" / "last.pt")
    b = load(tiny.run_dir("resumed") / "checkpoints" / "last.pt")
    assert same_tensors(a.state_dict, b.state_dict) and same_tensors(
        a.training_state["raw_state_dict"], b.training_state["raw_state_dict"]
    )
    # The checkpoint's model is the average, not the training weights.
    shadow = a.training_state["ema"]["shadow"]
    assert all(torch.equal(a.state_dict[name], value) for name, value in shadow.items())
    raw = a.training_state["raw_state_dict"]
    assert any(not torch.equal(raw[name], value) for name, value in shadow.items())
    assert a.training_state["ema"]["num_updates"] == 8


def test_aux_loss_is_logged_beside_the_exact_nll_and_changes_the_update(tiny):
    common = ["train.max_steps=3", "train.validate_every=3", "train.checkpoint_every=3", *COMPACT]
    train(tiny.config(*common), tiny.run_dir("nll"))
    train(tiny.config(*common, "train.aux_stft_weight=2.0", "train.aux_every=2"), tiny.run_dir("aux"))
    records = [r for r in read_log(tiny.run_dir("aux")) if r["event"] == "train"]
    assert [r["aux_loss"] is not None for r in records] == [True, False, True]  # steps 0 and 2
    assert all(math.isfinite(r["aux_loss"]) for r in records if r["aux_loss"] is not None)
    # The NLL is still the exact likelihood: step 1 draws the same batch in both runs.
    assert train_losses(tiny.run_dir("aux"))[1] == pytest.approx(train_losses(tiny.run_dir("nll"))[1])
    a = load(tiny.run_dir("nll") / "checkpoints" / "last.pt").state_dict
    b = load(tiny.run_dir("aux") / "checkpoints" / "last.pt").state_dict
    assert not same_tensors(a, b)


def test_stft_loss_is_zero_for_equal_signals_and_differentiable():
    target = torch.randn(2, 4096)
    assert float(losses.multi_resolution_stft_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    estimate = (target + 0.3 * torch.randn(2, 4096)).requires_grad_()
    loss = losses.multi_resolution_stft_loss(estimate, target)
    (grad,) = torch.autograd.grad(loss, [estimate])
    assert float(loss.detach()) > 0.1 and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="too short"):
        losses.multi_resolution_stft_loss(target[:, :500], target[:, :500])


def test_cpu_budget_stops_the_run_with_a_checkpoint(tiny, capsys):
    result = train(tiny.config("train.max_steps=10000", "train.max_cpu_minutes=0.002"), tiny.run_dir())
    assert result.status == "completed" and 1 <= result.step < 10000
    log = read_log(tiny.run_dir())
    (checkpoint,) = [r for r in log if r["event"] == "checkpoint" and r["reason"] == "periodic"][-1:]
    assert checkpoint["step"] == result.step and checkpoint["cpu_s"] >= 0.12
    assert "max_cpu_minutes" in capsys.readouterr().err
    ckpt = load(tiny.run_dir() / "checkpoints" / "last.pt")
    assert ckpt.training_state["trainer"]["cpu_seconds"] == pytest.approx(checkpoint["cpu_s"])


def test_compact_flow_learns(tiny):
    config = tiny.config(
        *COMPACT, "train.max_steps=40", "train.validate_every=20", "train.checkpoint_every=40"
    )
    train(config, tiny.run_dir())
    vals = [r["val_nll"] for r in read_log(tiny.run_dir()) if r["event"] == "val"]
    assert len(vals) == 2 and vals[1] < vals[0] < 0.95  # 0.919 + log-scale 0 = the untrained NLL


def test_mel_aux_loss_alone_also_trains_through_the_inverse(tiny):
    common = ["train.max_steps=2", "train.validate_every=2", "train.checkpoint_every=2", *COMPACT]
    train(tiny.config(*common, "train.aux_mel_weight=5.0"), tiny.run_dir())
    records = [r for r in read_log(tiny.run_dir()) if r["event"] == "train"]
    assert all(r["aux_loss"] is not None and r["aux_loss"] > 0 for r in records)


def test_source_model_trains_with_its_pitch_loss_logged(tiny):
    """``model.source=sine``: the batch's pitch drives the excitation, the predictor's loss is logged
    and falls, the NLL is the exact one and validation (predicted pitch) improves."""
    config = tiny.config(
        *COMPACT,
        "model.source=sine",
        "train.max_steps=30",
        "train.validate_every=15",
        "train.checkpoint_every=30",
        "train.aux_mel_weight=1.0",
    )
    train(config, tiny.run_dir())
    records = [r for r in read_log(tiny.run_dir()) if r["event"] == "train"]
    f0 = [r["f0_loss"] for r in records]
    assert all(v is not None and math.isfinite(v) for v in f0)
    assert sum(f0[-5:]) < sum(f0[:5])
    vals = [r["val_nll"] for r in read_log(tiny.run_dir()) if r["event"] == "val"]
    assert len(vals) == 2 and vals[1] < vals[0]
    (start,) = [r for r in read_log(tiny.run_dir()) if r["event"] == "start"]
    assert start["matmul_gflops"] > 0 and start["threads"] >= 1  # the speed the CPU budget was spent at
    ckpt = load(tiny.run_dir() / "checkpoints" / "last.pt")
    assert ckpt.config.model.source == "sine"
    assert any(name.startswith("f0_predictor.") for name in ckpt.state_dict)
