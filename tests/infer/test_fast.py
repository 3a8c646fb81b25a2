"""FastWaveGlow gives WaveGlow's audio (within 1e-4; measured ~1e-6), one test per rewrite."""

from __future__ import annotations

import lzma

import numpy as np
import pytest
import torch

from tests.helpers import random_model
from tests.test_model import VARIANTS
from waveflow.config import WaveNetConfig
from waveflow.flows import squeeze
from waveflow.infer.fast import FastWaveGlow, folded_cond_bytes
from waveflow.infer.streaming import decode_window
from waveflow.model import WaveGlow
from waveflow.presets import waveglow_ljspeech, waveglow_small, waveglow_tiny

TOL = 1e-4

EDGE_CASES = {
    # 8 layers: dilations up to 128 groups, longer than a 1-frame input (64 groups): every tap
    # of the deep layers falls off the sequence; kernel 5; upsampler kernel not a multiple of hop.
    "deep_k5": waveglow_tiny().replace(
        hop_length=200,
        upsample_kernel_size=600,
        wavenet=WaveNetConfig(n_layers=8, n_channels=8, kernel_size=5),
    ),
    "odd_upsample_kernel": waveglow_tiny().replace(upsample_kernel_size=1000),
    "one_layer": waveglow_tiny().replace(wavenet=WaveNetConfig(n_layers=1, n_channels=8, kernel_size=3)),
}
# The fast engine compiles WaveGlow's (upsampled conditioning, dense WaveNets); the compact family
# has its own cheap inverse (the model's) and is refused (test below).
CONFIGS = {**{k: v for k, v in VARIANTS.items() if v.conditioning == "upsample"}, **EDGE_CASES}


def test_compact_models_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="upsampled"):
        FastWaveGlow.from_model(random_model(VARIANTS["compact"]))


def _inputs(cfg, batch=2, frames=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, cfg.n_mels, frames, generator=gen)
    z = torch.randn(batch, cfg.n_group, frames * cfg.hop_length // cfg.n_group, generator=gen)
    return mel, z


# Every variant at 3 frames; the edge cases also at 1 frame (shorter than the deepest dilations).
CASES = [(name, 3) for name in sorted(CONFIGS)] + [(name, 1) for name in sorted(EDGE_CASES)]


@pytest.mark.parametrize("fold", [True, False], ids=["folded_upsampler", "unfolded"])
@pytest.mark.parametrize("name, frames", CASES)
def test_decode_matches_model(name, frames, fold):
    model = random_model(CONFIGS[name])
    fast = FastWaveGlow.from_model(model, fold_upsampler=fold)
    mel, z = _inputs(model.config, frames=frames)
    with torch.no_grad():
        expected = model.decode(z, mel)
    audio = fast.decode(z, mel)
    assert audio.shape == expected.shape
    assert (audio - expected).abs().max() < TOL


@pytest.mark.parametrize("fold", [True, False])
def test_infer_draws_the_models_noise(fold):
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model, fold_upsampler=fold)
    mel, _ = _inputs(model.config)
    expected = model.infer(mel, sigma=0.6, generator=torch.Generator().manual_seed(7))
    audio = fast.infer(mel, sigma=0.6, generator=torch.Generator().manual_seed(7))
    assert (audio - expected).abs().max() < TOL
    other = fast.infer(mel, sigma=0.6, generator=torch.Generator().manual_seed(8))
    assert (other - expected).abs().max() > 1e-2  # the noise matters: the test can fail


def test_batch_equals_items_one_by_one():
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model)
    mel, z = _inputs(model.config, batch=3, frames=2)
    batched = fast.decode(z, mel)
    for b in range(3):
        single = fast.decode(z[b : b + 1], mel[b : b + 1])
        assert (single[0] - batched[b]).abs().max() < 1e-6


# -- one test per rewrite, at the level where it acts ------------------------------------------------
@pytest.mark.parametrize("name", ["waveglow", "nice", "clamped", "no_weight_norm", "deep_k5", "one_layer"])
def test_conditioner_rewrite_matches_wavenet(name):
    """Weight norm folded, ``start`` folded into the first dilated conv, skip path folded into
    ``end``, biases carried with edge corrections, the sigmoid-only gate: the rewritten WaveNet
    gives the original's output from the same input and conditioning."""
    model = random_model(CONFIGS[name])
    fast = FastWaveGlow.from_model(model, fold_upsampler=False)
    mel, _ = _inputs(model.config, frames=2)
    num_samples = 2 * model.hop_length
    with torch.no_grad():
        cond = model.condition(mel, num_samples)  # (B, n_mels * g, T')
    for k in (0, len(model.flow.steps) - 1):
        coupling = model.flow.steps[k].coupling
        x_a = torch.randn(2, coupling.n_a, num_samples // model.n_group)
        with torch.no_grad():
            expected = coupling.conditioner(x_a, cond)  # (B, n_out, T')
        rows = cond.transpose(1, 2).contiguous()  # (B, T', n_mels * g)
        out = fast.steps[k].conditioner(x_a.transpose(1, 2), rows, 0)  # (B, T', n_out)
        assert (out.transpose(1, 2) - expected).abs().max() < TOL


def test_upsampler_fold_matches_upsample_then_project():
    """``cond_layer(upsample(mel))`` computed in one transposed conv from mel frames."""
    model = random_model(EDGE_CASES["odd_upsample_kernel"])
    folded = FastWaveGlow.from_model(model, fold_upsampler=True)
    unfolded = FastWaveGlow.from_model(model, fold_upsampler=False)
    mel, _ = _inputs(model.config, batch=1, frames=3)
    groups = 3 * model.hop_length // model.n_group
    rows_f = folded._cond_rows(mel[0], 0, groups)[None]  # (1, blocks, W * n_mels)
    rows_u = unfolded._cond_rows(mel[0], 0, groups)[None]  # (1, T', n_mels * g)
    with torch.no_grad():
        # the upsampler as a GEMM per hop block: the transposed conv's sums in another order
        torch.testing.assert_close(
            rows_u[0].T, squeeze(model.upsample(mel), model.n_group)[0], atol=1e-5, rtol=0
        )
    for i in range(model.config.wavenet.n_layers):
        a = folded.steps[0]._project(rows_f, i, 0, groups)
        b = unfolded.steps[0]._project(rows_u, i, 0, groups)
        assert a.shape == b.shape == (1, groups, 2 * model.config.wavenet.n_channels)
        assert (a - b).abs().max() < TOL


def test_mixing_inverse_is_computed_in_float64():
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model)
    for step, fstep in zip(model.flow.steps, fast.steps):
        w_inv = torch.linalg.inv(step.mix.weight.detach().double()).float()
        assert torch.equal(fstep.mix_t.T, w_inv)


def test_model_is_left_unchanged():
    model = random_model(waveglow_tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    FastWaveGlow.from_model(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_folded_weight_size():
    # float32 x steps x window frames x mels x positions per hop x cond channels (2 C L)
    assert folded_cond_bytes(WaveGlow(waveglow_tiny())) == 4 * 4 * 4 * 80 * 64 * (2 * 16 * 2)
    assert folded_cond_bytes(WaveGlow(waveglow_ljspeech())) == 4 * 12 * 4 * 80 * 32 * (2 * 256 * 8)


def test_decode_window_matches_streaming():
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model)
    mel, z = _inputs(model.config, batch=1, frames=8)
    start, width, f0 = 100, 250, 1  # groups [100, 350) from frames [1, 8); 64 groups per hop
    expected = decode_window(model, mel[:, :, f0:], z[:, :, start : start + width], start, f0)
    audio = fast.decode_window(mel[:, :, f0:], z[:, :, start : start + width], start, f0)
    assert (audio - expected).abs().max() < TOL


@pytest.mark.parametrize(
    "mel_shape, z_shape, match",
    [
        ((1, 79, 2), None, "n_mels=80"),
        ((1, 80, 2, 1), None, "n_mels=80"),
        ((1, 80, 2), (1, 8, 63), "z must have shape"),
        ((1, 80, 2), (2, 8, 64), "z must have shape"),
    ],
)
def test_bad_inputs_raise(mel_shape, z_shape, match):
    fast = FastWaveGlow.from_model(random_model(waveglow_small()), fold_upsampler=False)
    z = None if z_shape is None else torch.zeros(z_shape)
    with pytest.raises(ValueError, match=match):
        fast.infer(torch.zeros(mel_shape), z=z)


def test_nan_mel_raises():
    fast = FastWaveGlow.from_model(random_model(waveglow_tiny()))
    mel = torch.zeros(1, 80, 2)
    mel[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        fast.infer(mel)


def test_nvidia_fixture(nvidia_fixtures):
    """NVIDIA's fixture checkpoint: the outputs of NVIDIA's own ``infer`` (sigma 0, seeded sigma 0.6)."""
    from waveflow.interop.nvidia import load_nvidia_checkpoint

    raw = lzma.open(nvidia_fixtures / "waveglow_orig_checkpoint.pt.xz").read()
    cfg, state = load_nvidia_checkpoint(raw)
    model = WaveGlow.from_config(cfg)
    model.load_state_dict(state)
    io_arrays = np.load(nvidia_fixtures / "waveglow_io.npz")
    mel = torch.from_numpy(io_arrays["mel"])
    for fold in (True, False):
        fast = FastWaveGlow.from_model(model.eval(), fold_upsampler=fold)
        audio = fast.infer(mel, sigma=0.0)
        assert (audio - torch.from_numpy(io_arrays["infer_sigma0"])).abs().max() < 1e-5
        torch.manual_seed(0)  # the generator below, not the global RNG, must decide the noise
        audio = fast.infer(mel, sigma=0.6, generator=torch.Generator().manual_seed(1234))
        assert (audio - torch.from_numpy(io_arrays["infer_sigma0p6_seed1234"])).abs().max() < 1e-5


@pytest.mark.slow
def test_ljspeech_preset_unfolded():
    model = random_model(waveglow_ljspeech(), std=0.02)
    fast = FastWaveGlow.from_model(model, fold_upsampler=False)
    mel, z = _inputs(model.config, batch=1, frames=2)
    with torch.no_grad():
        expected = model.decode(z, mel)
    assert (fast.decode(z, mel) - expected).abs().max() < TOL


@pytest.mark.slow
def test_ljspeech_preset_folded():
    """Folding NVIDIA's model takes ~0.6 TFLOP and 2 GB of memory."""
    model = random_model(waveglow_ljspeech(), std=0.02)
    fast = FastWaveGlow.from_model(model, fold_upsampler=True)
    mel, z = _inputs(model.config, batch=1, frames=3)
    with torch.no_grad():
        expected = model.decode(z, mel)
    assert (fast.decode(z, mel) - expected).abs().max() < TOL


@pytest.mark.parametrize("rows", [4096, 8], ids=["one_block", "many_blocks"])
@pytest.mark.parametrize("frames", [1, 3])
def test_winograd_dilated_convs_match_the_direct_ones(monkeypatch, rows, frames):
    """The dilated layers by F(4, 3) (time-major tiles, in blocks of rows) against the same engine
    with its three shifted GEMMs per layer; deep enough that dilations exceed the sequence."""
    import waveflow.infer.fast as fast_module

    monkeypatch.setattr(fast_module, "_WINOGRAD_ROWS", rows)
    cfg = waveglow_tiny().replace(wavenet=WaveNetConfig(n_layers=7, n_channels=8, kernel_size=3))
    model = random_model(cfg)
    fast = FastWaveGlow.from_model(model, fold_upsampler=False)
    assert all(step.winograd for step in fast.steps)
    mel, z = _inputs(cfg, frames=frames)
    results = []
    for use in (True, False):
        for step in fast.steps:
            step.use_winograd = use
        results.append(fast.decode(z, mel))
    winograd, direct = results
    assert not torch.equal(winograd, direct)  # different arithmetic
    torch.testing.assert_close(winograd, direct, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(winograd, model.decode(z, mel), atol=TOL, rtol=0)
