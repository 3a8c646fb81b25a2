"""The WaveGlow composition: identity at init, exact inversion, log-det, receptive field, input checks."""

from __future__ import annotations

import pytest
import torch

from tests.flows.contract import jacobian_logdet
from tests.helpers import random_model
from waveflow.config import ModelConfig, WaveNetConfig
from waveflow.model import WaveGlow
from waveflow.nn import WaveNet
from waveflow.presets import (
    compact_tiny,
    glow,
    nice,
    realnvp,
    waveglow_ljspeech,
    waveglow_paper,
    waveglow_tiny,
)


def tiny(**changes) -> ModelConfig:
    return waveglow_tiny().replace(**changes)


VARIANTS = {
    "waveglow": tiny(),
    "nice": nice().replace(n_flows=4, n_group=4, n_early_every=2, wavenet=waveglow_tiny().wavenet),
    "realnvp": realnvp().replace(n_flows=4, n_group=4, n_early_every=2, wavenet=waveglow_tiny().wavenet),
    "glow": glow().replace(n_flows=4, n_group=4, n_early_every=2, wavenet=waveglow_tiny().wavenet),
    "clamped": tiny(log_scale_clamp=2.0),
    "no_weight_norm": tiny(weight_norm=False),
    "no_early_outputs": tiny(n_early_size=0),
    "compact": compact_tiny(),
    "compact_shared": compact_tiny().replace(share_wavenet=True),
    "compact_clamped_lu": compact_tiny().replace(log_scale_clamp=3.0, mixing="conv1x1_lu", actnorm=True),
    "compact_source": compact_tiny().replace(source="sine"),
    "compact_source_direct": compact_tiny().replace(source="sine", source_direct=True),
}


def inputs(batch: int = 2, frames: int = 4, hop: int = 256, n_mels: int = 80):
    mel = torch.randn(batch, n_mels, frames)
    audio = torch.randn(batch, frames * hop) * 0.3
    return audio, mel


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_coupling_is_identity_at_init(name):
    model = WaveGlow.from_config(VARIANTS[name]).eval()
    for step in model.flow.steps:
        c = step.coupling.num_channels
        x = torch.randn(2, c, 16)
        cond = torch.randn(2, model.config.cond_size, 16)
        with torch.no_grad():
            y, logdet = step.coupling(x, cond)
        assert torch.equal(y, x)
        assert torch.equal(logdet, torch.zeros(2))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_round_trip_every_variant(name):
    model = random_model(VARIANTS[name])
    audio, mel = inputs()
    with torch.no_grad():
        z, logdet = model(audio, mel)
        back, logdet_inv = model.inverse(z, mel)
    assert z.shape == (2, model.n_group, audio.shape[1] // model.n_group)
    assert (back - audio).abs().max() <= 1e-5
    torch.testing.assert_close(logdet_inv, -logdet, rtol=1e-5, atol=1e-3)
    if model.config.coupling == "affine":  # random weights: genuinely not volume preserving
        assert logdet.abs().min() > 1e-3


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_whole_model_logdet_matches_autograd_jacobian(name):
    model = random_model(VARIANTS[name], std=0.1).double()
    audio = torch.randn(1, 16, dtype=torch.float64) * 0.3  # 4 groups of 4 samples
    mel = torch.randn(1, 80, 1, dtype=torch.float64)
    _, logdet = model(audio, mel)
    expected = jacobian_logdet(lambda a: model(a, mel)[0], audio)
    torch.testing.assert_close(logdet[0], expected, rtol=1e-7, atol=1e-8)


def test_nice_is_volume_preserving():
    model = random_model(VARIANTS["nice"])
    audio, mel = inputs()
    with torch.no_grad():
        _, logdet = model(audio, mel)
    assert torch.equal(logdet, torch.zeros(2))


def test_ljspeech_preset_round_trip_one_second():
    """87.7 M parameters with random perturbed weights: decode(encode(x)) within 1e-4 on 1 s of audio."""
    torch.manual_seed(1)
    model = WaveGlow.from_config(waveglow_ljspeech())
    with torch.no_grad():
        for step in model.flow.steps:  # make every coupling non-trivial (|log_s| ~ 0.1)
            end = step.coupling.conditioner.end
            end.weight.normal_(0.0, 0.002)
            end.bias.normal_(0.0, 0.02)
    model.eval()
    frames = 87  # 22272 samples ~ 1.01 s
    mel = torch.randn(1, 80, frames) - 5.0
    audio = torch.randn(1, frames * 256) * 0.1
    with torch.no_grad():
        z, logdet = model(audio, mel)
        back = model.decode(z, mel)
    assert logdet.abs().item() > 100.0
    err = (back - audio).abs().max().item()
    assert err <= 1e-4, err


def test_parameter_counts_match_nvidia():
    model = WaveGlow.from_config(waveglow_ljspeech())
    assert sum(p.numel() for p in model.parameters()) == 87_879_272
    model.remove_weight_norm()
    assert sum(p.numel() for p in model.parameters()) == 87_731_816


def test_paper_preset_parameter_count():
    # DeepLearningExamples' default 512-channel model, with weight norm: 268,294,760 (shared/reference).
    model = WaveGlow.from_config(waveglow_paper())
    assert sum(p.numel() for p in model.parameters()) == 268_294_760


def test_remove_weight_norm_keeps_outputs():
    model = random_model(tiny())
    audio, mel = inputs()
    with torch.no_grad():
        z1, ld1 = model(audio, mel)
        model.remove_weight_norm()
        z2, ld2 = model(audio, mel)
    torch.testing.assert_close(z2, z1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ld2, ld1, rtol=1e-5, atol=1e-4)


def test_infer_shapes_seed_and_supplied_latent():
    model = random_model(tiny())
    mel = torch.randn(2, 80, 5)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    a1 = model.infer(mel, sigma=0.6, generator=gen())
    a2 = model.infer(mel, sigma=0.6, generator=gen())
    assert a1.shape == (2, 5 * 256)
    assert torch.equal(a1, a2)
    z = model.sample_latent(2, 5 * 256 // 4, sigma=0.6, generator=gen())
    assert torch.equal(model.infer(mel, z=z), a1)
    assert not torch.equal(model.infer(mel, sigma=0.6, generator=torch.Generator().manual_seed(8)), a1)
    zero = model.infer(mel, sigma=0.0)
    assert torch.equal(zero, model.infer(mel, sigma=0.0))


def test_batch_consistency_forward_and_infer():
    model = random_model(tiny())
    audio, mel = inputs(batch=3)
    z_noise = torch.randn(3, 4, audio.shape[1] // 4)
    with torch.no_grad():
        z, logdet = model(audio, mel)
        out = model.infer(mel, z=z_noise)
        for i in range(3):
            zi, ldi = model(audio[i : i + 1], mel[i : i + 1])
            torch.testing.assert_close(zi, z[i : i + 1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ldi, logdet[i : i + 1], rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(model.infer(mel[i : i + 1], z=z_noise[i : i + 1]), out[i : i + 1])


def test_receptive_field_matches_gradient_probe():
    """With direct convolutions the gradient is exactly zero outside the receptive field; the
    Winograd F(4, 3) convolutions (the CPU default) give the same gradient up to float64 rounding."""
    cfg = tiny(n_flows=3, n_early_size=0, wavenet=WaveNetConfig(n_layers=2, n_channels=8, kernel_size=3))
    model = random_model(cfg, std=0.2).double()
    g = model.n_group
    frames = 8
    mel = torch.randn(1, 80, frames, dtype=torch.float64)
    z = torch.randn(1, g, frames * 256 // g, dtype=torch.float64, requires_grad=True)
    centre_group = z.shape[2] // 2
    wavenets = [m for m in model.modules() if isinstance(m, WaveNet)]
    grads = []
    for min_dilation in (1, None):
        for net in wavenets:
            net.winograd_min_dilation = min_dilation
        (grad,) = torch.autograd.grad(model.decode(z, mel)[0, centre_group * g], [z])
        grads.append(grad)
    winograd_grad, direct_grad = grads
    torch.testing.assert_close(
        winograd_grad, direct_grad, atol=1e-12 * float(direct_grad.abs().max()), rtol=0
    )
    groups = torch.nonzero(direct_grad[0].abs().sum(0) > 0).flatten()
    width_samples = (int(groups.max()) - int(groups.min()) + 1) * g
    assert width_samples == model.receptive_field
    assert int(groups.min()) == centre_group - (model.receptive_field // g - 1) // 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: (torch.randn(1, 1024), torch.randn(1, 60, 4)), "n_mels=80"),
        (lambda: (torch.randn(1, 1024), torch.randn(80, 4)), r"\(B, n_mels, frames\)"),
        (lambda: (torch.randn(1, 1022), torch.randn(1, 80, 4)), "multiple of n_group"),
        (lambda: (torch.randn(1, 1024), torch.full((1, 80, 4), float("nan"))), "NaN"),
        (lambda: (torch.randn(1, 1024), torch.full((1, 80, 4), float("inf"))), "NaN/Inf"),
        (lambda: (torch.full((1, 1024), float("nan")), torch.randn(1, 80, 4)), "audio contains"),
        (lambda: (torch.randn(2, 1024), torch.randn(1, 80, 4)), "batch sizes differ"),
        (lambda: (torch.randn(1, 8192), torch.randn(1, 80, 4)), "cover at most"),
    ],
)
def test_bad_input_raises_clear_value_error(make, message):
    model = WaveGlow.from_config(tiny())
    audio, mel = make()
    with pytest.raises(ValueError, match=message):
        model(audio, mel)


def test_infer_rejects_bad_latent_and_mel():
    model = WaveGlow.from_config(tiny())
    with pytest.raises(ValueError, match="z must have shape"):
        model.infer(torch.randn(1, 80, 4), z=torch.randn(1, 4, 10))
    with pytest.raises(ValueError, match="n_mels=80"):
        model.infer(torch.randn(1, 81, 4))
