"""The compact flow family: frame-rate conditioning, separable coupling networks, weight sharing.

The generic flow properties (identity at init, round trip, log-det against autograd) run over
the compact variants in ``tests/test_model.py``; here: the alignment rule, the receptive field,
windowed/streamed synthesis being exact, the presets and the recipe configs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.flows.test_contract import randomize_
from waveflow.config import ModelConfig
from waveflow.infer.streaming import LatentStream, StreamingSynthesizer, synthesize_chunked
from waveflow.model import WaveGlow
from waveflow.nn import FrameConditioner, SeparableWaveNet
from waveflow.presets import compact, compact_tiny
from waveflow.train import load_config

HOP = 64


def tiny_model(**changes) -> WaveGlow:
    cfg = compact_tiny().replace(n_mels=16, hop_length=HOP, **changes)
    torch.manual_seed(0)
    return randomize_(WaveGlow.from_config(cfg), 0.1).eval()


def test_each_hop_reads_its_kernel_of_frames():
    """Hop j (samples [j*hop, (j+1)*hop)) depends on frames j - p .. j + 1 + p and no other."""
    cond = FrameConditioner(n_mels=8, hop_length=HOP, n_group=16, channels=4, kernel_size=4)  # p = 1
    frames = 10
    mel = torch.randn(1, 8, frames, requires_grad=True)
    out = cond(mel, frames * HOP)  # (1, 4, frames * 4): 4 groups per hop
    assert out.shape == (1, 4, frames * HOP // 16)
    for j in (0, 4, frames - 1):
        (grad,) = torch.autograd.grad(out[0, :, j * 4 : (j + 1) * 4].sum(), [mel], retain_graph=True)
        used = torch.nonzero(grad[0].abs().sum(0) > 0).flatten().tolist()
        assert used == [f for f in range(j - 1, j + 3) if 0 <= f < frames]
    assert cond.frame_range(4 * HOP, 5 * HOP, frames) == (3, 7)


def test_window_equals_the_slice_of_the_whole_sequence():
    cond = FrameConditioner(n_mels=8, hop_length=HOP, n_group=16, channels=4, kernel_size=6)
    frames = 12
    mel = torch.randn(2, 8, frames)
    full = cond(mel, frames * HOP)
    for start_group, width in [(0, 5), (3, 17), (20, frames * 4 - 20), (7, 1)]:
        f0, f1 = cond.frame_range(start_group * 16, (start_group + width) * 16, frames)
        window = cond.window(mel[:, :, f0:f1], f0, start_group * 16, width * 16, frames)
        torch.testing.assert_close(window, full[:, :, start_group : start_group + width])
    with pytest.raises(ValueError, match="do not include frames"):
        cond.window(mel[:, :, 5:], 5, 0, 64, frames)
    with pytest.raises(ValueError, match="at most"):
        cond(mel, (frames + 1) * HOP)


def test_training_crop_and_synthesis_agree_on_the_alignment():
    """A crop of T samples comes with T / hop + 1 centred frames; synthesis from F frames gives
    F * hop samples and repeats the last frame: hops that read no frame past F agree."""
    model = tiny_model()
    mel = torch.randn(1, 16, 9)
    with torch.no_grad():
        crop = model.condition(mel, 8 * HOP)  # training: 9 frames for 8 hops
        synth = model.condition(mel[:, :, :8], 8 * HOP)  # synthesis: 8 frames for 8 hops
    # cond_kernel_size 4: hop j reads frames j - 1 .. j + 2, so hops 0..5 never reach frame 8.
    torch.testing.assert_close(synth[:, :, : 6 * 4], crop[:, :, : 6 * 4])
    assert not torch.allclose(synth[:, :, 6 * 4 :], crop[:, :, 6 * 4 :])


def test_receptive_field_matches_gradient_probe():
    model = tiny_model(n_flows=3, n_early_size=0).double()
    g, frames = model.n_group, 40
    mel = torch.randn(1, 16, frames, dtype=torch.float64)
    z = torch.randn(1, g, frames * HOP // g, dtype=torch.float64, requires_grad=True)
    centre = z.shape[2] // 2
    (grad,) = torch.autograd.grad(model.decode(z, mel)[0, centre * g], [z])
    groups = torch.nonzero(grad[0].abs().sum(0) > 0).flatten()
    assert (int(groups.max()) - int(groups.min()) + 1) * g == model.receptive_field
    assert int(groups.min()) == centre - (model.receptive_field // g - 1) // 2


@pytest.mark.parametrize("chunk_groups", [7, 50, 10_000])
def test_chunked_synthesis_is_exact(chunk_groups):
    model = tiny_model()
    mel = torch.randn(2, 16, 60)
    z = torch.randn(2, model.n_group, 60 * HOP // model.n_group)
    with torch.no_grad():
        reference = model.decode(z, mel)
        chunked = synthesize_chunked(model, mel, z, chunk_groups)
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=0)


def test_stream_is_exact_with_the_lookahead_of_the_conditioning():
    model = tiny_model()
    mel = torch.randn(1, 16, 70)
    z = LatentStream(model.n_group, 0.6, torch.Generator().manual_seed(1)).read(70 * HOP // model.n_group)
    with torch.no_grad():
        offline = model.decode(z, mel)[0]
        stream = StreamingSynthesizer(
            model, LatentStream(model.n_group, 0.6, torch.Generator().manual_seed(1))
        )
        pieces = [stream.push(mel[:, :, i : i + 3]) for i in range(0, 70, 3)] + [stream.flush()]
    torch.testing.assert_close(torch.cat(pieces), offline, atol=1e-5, rtol=0)
    # The look-ahead is part of the latency: hop j waits for frame j + 1 + p.
    assert stream.latency_samples >= model.cond_lookahead


def test_shared_wavenet_is_one_module_per_width():
    shared = WaveGlow.from_config(compact_tiny().replace(share_wavenet=True))
    separate = WaveGlow.from_config(compact_tiny())
    nets = {id(step.coupling.conditioner) for step in shared.flow.steps}
    widths = {step.coupling.num_channels for step in shared.flow.steps}
    assert len(nets) == len(widths) == 2 < len(shared.flow.steps)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(shared) < count(separate)
    # The shared weights survive a state-dict round trip as one tensor.
    clone = WaveGlow.from_config(shared.config)
    clone.load_state_dict(shared.state_dict())
    assert clone.flow.steps[0].coupling.conditioner is clone.flow.steps[1].coupling.conditioner


def test_separable_wavenet_costs_less_than_a_dense_one():
    net = SeparableWaveNet(128, 256, 96, n_layers=6, n_channels=128, dilation_cycle=3)
    assert net.dilations == (1, 2, 4, 1, 2, 4) and net.context == 14
    depthwise = net.depthwise[0].weight.numel()
    assert depthwise == 128 * 3  # one 3-tap filter per channel (a dense layer: 128 * 256 * 3)


def test_compact_preset_size_and_recipe_configs():
    model = WaveGlow.from_config(compact())
    assert sum(p.numel() for p in model.parameters()) == 5_166_336
    model.remove_weight_norm()
    assert sum(p.numel() for p in model.parameters()) < 5_166_336
    configs = REPO / "recipes" / "speech_corpus" / "configs"
    for name in ("compact.yaml", "compact_aux.yaml"):
        assert load_config(configs / name).model == compact(), name


def test_config_rules_of_the_family():
    with pytest.raises(ValueError, match="cond_kernel_size"):
        ModelConfig().replace(conditioning="frame", cond_kernel_size=3)
    with pytest.raises(ValueError, match="dilation_cycle"):
        compact().wavenet.replace(separable=False)
    assert compact().cond_size == 96 and ModelConfig().cond_size == 80 * 8


def test_compact_recipe_config_path_exists():
    assert Path(REPO / "recipes" / "speech_corpus" / "configs" / "compact.yaml").is_file()


def test_vocoder_runs_a_compact_model_on_every_entry_point():
    from waveflow.config import MelConfig
    from waveflow.infer.vocoder import Vocoder

    mel_config = MelConfig(
        sample_rate=8000, n_fft=256, win_length=256, hop_length=HOP, n_mels=16, f_max=4000.0
    )
    vocoder = Vocoder.from_model(tiny_model(), mel_config)
    vocoder.check_mel = False
    mel = torch.randn(16, 50) - 4.0
    audio, lengths = vocoder(mel, generator=torch.Generator().manual_seed(3))
    # The vocoder's path (weight norm folded, 4096-frame windows) is the model's own inverse.
    z = torch.randn(1, 16, 50 * HOP // 16)
    with torch.no_grad():
        expected = tiny_model().decode(z, mel[None])
    torch.testing.assert_close(vocoder(mel, z=z)[0], expected, atol=1e-5, rtol=0)
    assert audio.shape == (1, 50 * HOP) and int(lengths[0]) == 50 * HOP and torch.isfinite(audio).all()
    streamed = torch.cat(
        list(
            vocoder.stream(
                [mel[:, i : i + 7] for i in range(0, 50, 7)], generator=torch.Generator().manual_seed(3)
            )
        )
    )
    torch.testing.assert_close(streamed, audio[0], atol=1e-5, rtol=0)
    scored = vocoder.score(audio[0].numpy() * 0.5, 8000)
    assert math.isfinite(scored["nats_per_sample"]) and scored["num_samples"] == 50 * HOP
    with pytest.raises(ValueError, match="compact"):
        Vocoder.from_model(tiny_model(), mel_config, engine="fast")
