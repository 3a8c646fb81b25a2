"""The exact NLL against closed forms and NVIDIA's convention."""

from __future__ import annotations

import math

import pytest
import torch

from waveflow import losses
from waveflow.model import WaveGlow
from waveflow.presets import waveglow_tiny


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_nll_of_identity_flow_matches_gaussian_log_density(sigma):
    """At initialisation the flow is orthogonal (couplings are identities, 1x1 convs rotations):
    ||z|| = ||x|| and log|det| = 0, so the NLL of Gaussian audio is the Gaussian's own density."""
    model = WaveGlow.from_config(waveglow_tiny()).eval()
    audio = torch.randn(3, 4096) * sigma
    mel = torch.randn(3, 80, 16)
    with torch.no_grad():
        z, logdet = model(audio, mel)
        nll = losses.nll(z, logdet, sigma)
    assert torch.allclose(logdet, torch.zeros(3), atol=1e-3)
    reference = -torch.distributions.Normal(0.0, sigma).log_prob(audio.double()).mean(dim=1)
    torch.testing.assert_close(nll.double(), reference, rtol=1e-5, atol=1e-5)
    # And it is close to the differential entropy 0.5 + log(sigma) + 0.5 log(2 pi) in expectation.
    entropy = 0.5 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
    assert abs(nll.mean().item() - entropy) < 0.03


def test_nvidia_convention_differs_by_the_gaussian_constant():
    z = torch.randn(2, 8, 100)
    logdet = torch.tensor([3.0, -2.0])
    for sigma in (0.7, 1.0):
        diff = losses.nll(z, logdet, sigma) - losses.nvidia_loss(z, logdet, sigma)
        expected = math.log(sigma) + 0.5 * math.log(2 * math.pi)
        torch.testing.assert_close(diff, torch.full((2,), expected), rtol=1e-6, atol=1e-6)


def test_nvidia_loss_formula():
    z = torch.randn(2, 8, 50)
    logdet = torch.tensor([10.0, 20.0])
    expected = ((z**2).sum() / 2 - logdet.sum()) / z.numel()  # their sum over the batch / (B * samples)
    torch.testing.assert_close(losses.nvidia_loss(z, logdet).mean(), expected)


def test_half_precision_z_is_summed_in_float32():
    z = torch.full((1, 8, 4096), 4.0, dtype=torch.bfloat16)
    out = losses.nll(z, torch.zeros(1), 1.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([8.0 + 0.5 * math.log(2 * math.pi)]))


def test_bits():
    assert losses.nats_to_bits(math.log(2.0)) == pytest.approx(1.0)


def test_sigma_must_be_positive():
    with pytest.raises(ValueError, match="sigma"):
        losses.nll(torch.zeros(1, 2, 2), torch.zeros(1), 0.0)
