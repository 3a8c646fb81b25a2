"""Early-output schedule arithmetic and the z layout it implies."""

from __future__ import annotations

import pytest
import torch

from waveflow.flows import EarlyOutputSchedule
from waveflow.model import WaveGlow
from waveflow.presets import waveglow_ljspeech, waveglow_tiny


def test_nvidia_schedule():
    s = EarlyOutputSchedule.compute(num_steps=12, num_channels=8, every=4, size=2)
    assert s.emit == (0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0)
    assert s.channels == (8, 8, 8, 8, 6, 6, 6, 6, 4, 4, 4, 4)
    assert s.remaining == 4
    assert s.blocks == [(4, 2), (8, 2)]


def test_no_early_outputs():
    s = EarlyOutputSchedule.compute(num_steps=5, num_channels=4, every=1, size=0)
    assert s.emit == (0,) * 5 and s.remaining == 4


def test_schedule_refuses_to_exhaust_channels():
    with pytest.raises(ValueError, match="exhaust"):
        EarlyOutputSchedule.compute(num_steps=12, num_channels=4, every=2, size=2)


def test_nvidia_per_flow_shapes_in_model():
    """WN input/output widths per flow as in NVIDIA's code: h = 4, 3, 2; 1x1 convs 8, 6, 4."""
    model = WaveGlow.from_config(waveglow_ljspeech().replace(wavenet=waveglow_tiny().wavenet))
    for k, step in enumerate(model.flow.steps):
        c = (8, 6, 4)[k // 4]
        assert step.mix.weight.shape == (c, c)
        assert step.coupling.conditioner.in_channels == c // 2
        assert step.coupling.conditioner.out_channels == 2 * (c // 2)
        assert step.coupling.conditioner.cond_channels == 80 * 8


def test_emitted_channels_are_the_first_ones():
    """z[:, :2] is what entered step 4 first; later steps never touch it."""
    model = WaveGlow.from_config(waveglow_tiny()).eval()
    mel = torch.randn(1, 80, 2)
    audio = torch.randn(1, 512) * 0.1
    with torch.no_grad():
        z, _ = model(audio, mel)
        # Perturb the last step: the early block must not change, the remaining block must.
        model.flow.steps[-1].coupling.conditioner.end.bias.add_(0.5)
        z2, _ = model(audio, mel)
    assert torch.equal(z[:, :2], z2[:, :2])
    assert not torch.allclose(z[:, 2:], z2[:, 2:])
