"""FastWaveGlow with the upsampler folded into only some layers (``fold_upsampler=<bytes>``): the
model's audio, the budget respected, the FLOP count of tools/flops.py, and the Winograd switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, mm_flop

from tests.helpers import random_model
from waveflow.infer.fast import FastWaveGlow, folded_cond_bytes, folded_layer_bytes, folded_layers
from waveflow.infer.streaming import decode_window
from waveflow.presets import waveglow_ljspeech, waveglow_small, waveglow_tiny

TOL = 1e-4
TOOLS = Path(__file__).resolve().parents[2] / "tools"
CONFIGS = {
    "tiny": waveglow_tiny(),
    "odd_upsample_kernel": waveglow_tiny().replace(upsample_kernel_size=1000),
    # W * n_mels = 3 * 80 window values over P = 200 / 4 = 50 positions: 5 each, 10 zero-padded
    "uneven_window": waveglow_tiny().replace(hop_length=200, upsample_kernel_size=600),
}


def _inputs(cfg, batch=2, frames=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, cfg.n_mels, frames, generator=gen)
    z = torch.randn(batch, cfg.n_group, frames * cfg.hop_length // cfg.n_group, generator=gen)
    return mel, z


def _folded_bytes(fast: FastWaveGlow) -> int:
    """Bytes of the folded conditioning weights the engine holds."""
    return sum(
        4 * w.numel() for step in fast.steps for w, folded in zip(step.cond_weight, step.folded) if folded
    )


def _budget(model, layers: int) -> int:
    return layers * folded_layer_bytes(model) + folded_layer_bytes(model) // 2


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("frames", [1, 3])
def test_partial_fold_matches_model(name, frames):
    model = random_model(CONFIGS[name])
    total = model.config.n_flows * model.config.wavenet.n_layers
    mel, z = _inputs(model.config, frames=frames)
    with torch.no_grad():
        expected = model.decode(z, mel)
    for layers in (1, total // 2 + 1, total - 1):
        fast = FastWaveGlow.from_model(model, fold_upsampler=_budget(model, layers))
        assert fast.folded_layers == layers and fast.row_layout.kind == "both" and fast.fold_upsampler
        audio = fast.decode(z, mel)
        assert (audio - expected).abs().max() < TOL, layers


def test_budget_is_respected_and_counted():
    model = random_model(waveglow_tiny())
    total = model.config.n_flows * model.config.wavenet.n_layers
    per_layer = folded_layer_bytes(model)
    assert per_layer == folded_cond_bytes(model) // total  # 320 window values split evenly over 64
    for budget in (0, per_layer - 1, per_layer, 3 * per_layer + 5, folded_cond_bytes(model) - 1):
        fast = FastWaveGlow.from_model(model, fold_upsampler=budget)
        assert fast.folded_layers == folded_layers(model, budget) == min(budget // per_layer, total - 1)
        assert _folded_bytes(fast) <= budget
        assert fast.fold_upsampler == (budget >= per_layer)
    full = FastWaveGlow.from_model(model, fold_upsampler=folded_cond_bytes(model))
    assert full.folded_layers == total and full.row_layout.kind == "blocks"
    assert _folded_bytes(full) == folded_cond_bytes(model)
    assert FastWaveGlow.from_model(model, fold_upsampler=False).row_layout.kind == "groups"
    with pytest.raises(ValueError, match="byte budget"):
        FastWaveGlow.from_model(model, fold_upsampler=-1)


def test_uneven_window_budget_counts_the_padding():
    model = random_model(CONFIGS["uneven_window"])
    fast = FastWaveGlow.from_model(model, fold_upsampler=_budget(model, 3))
    assert fast.folded_layers == 3
    assert _folded_bytes(fast) == 3 * folded_layer_bytes(model)


def test_ljspeech_layer_size():
    """NVIDIA's model: 20 MiB per folded layer, 96 layers (2.0 GB) in all."""
    cfg = waveglow_ljspeech()
    assert folded_layer_bytes(cfg) == 20 * 2**20
    assert folded_layers(cfg, 400 * 2**20) == 20
    assert folded_layers(cfg, 2**40) == 96


def test_folded_layers_run_first():
    """The steps the inverse runs first (the highest) are folded first, layer by layer."""
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model, fold_upsampler=_budget(model, 3))
    assert [step.folded for step in fast.steps] == [[False, False]] * 2 + [[True, False], [True, True]]


@pytest.mark.parametrize("layers", [0, 3, 8])
def test_decode_window_matches_streaming(layers):
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model, fold_upsampler=_budget(model, layers))
    mel, z = _inputs(model.config, batch=1, frames=8)
    start, width, f0 = 100, 250, 1  # groups [100, 350) from frames [1, 8); 64 groups per hop
    expected = decode_window(model, mel[:, :, f0:], z[:, :, start : start + width], start, f0)
    audio = fast.decode_window(mel[:, :, f0:], z[:, :, start : start + width], start, f0)
    assert (audio - expected).abs().max() < TOL


def test_chunked_synthesis_with_a_partial_fold():
    model = random_model(waveglow_small())
    fast = FastWaveGlow.from_model(model, fold_upsampler=_budget(model, 10))
    mel, z = _inputs(model.config, batch=1, frames=6)
    whole = fast.decode(z, mel)
    chunked = fast.synthesize_chunked(mel, z, chunk_groups=40)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_batch_equals_items_one_by_one():
    model = random_model(waveglow_tiny())
    fast = FastWaveGlow.from_model(model, fold_upsampler=_budget(model, 5))
    mel, z = _inputs(model.config, batch=3, frames=2)
    batched = fast.decode(z, mel)
    for b in range(3):
        assert (fast.decode(z[b : b + 1], mel[b : b + 1])[0] - batched[b]).abs().max() < 1e-6


# torch's counter does not know the in-place GEMM and oneDNN's linear that FastWaveGlow uses.
_EXTRA_COUNTS = {
    torch.ops.aten.addmm_: lambda inp, a, b, *args, out_shape=None, **kw: mm_flop(a, b),
    torch.ops.mkldnn._linear_pointwise: lambda x, w, *args, out_shape=None, **kw: 2 * x[0] * x[1] * w[0],
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("frames", [2, 5])
def test_flop_count_of_a_partial_fold(monkeypatch, name, frames):
    monkeypatch.syspath_prepend(str(TOOLS))
    import flops

    model = random_model(CONFIGS[name])
    total = model.config.n_flows * model.config.wavenet.n_layers
    mel, z = _inputs(model.config, frames=frames)
    for fold in (False, _budget(model, 1), _budget(model, total - 1), True):
        fast = FastWaveGlow.from_model(model, fold_upsampler=fold)
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_COUNTS) as counter:
            fast.decode(z, mel)
        expected = flops.fast_flops(model.config, frames, 2, fold_upsampler=fold)["total"]
        assert counter.get_total_flops() == expected, fold
