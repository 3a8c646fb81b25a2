"""The pitch-synchronous source of the compact flows (``model.source: sine``, :mod:`waveflow.nn.source`).

The generic flow properties of a source model (identity at init, round trip, log-det against
autograd) run in ``tests/test_model.py`` (variant ``compact_source``); here: the pitch tracker
against known tones and against librosa's pYIN on real speech, the excitation's frequency and
phase, the conditioning windows, chunked synthesis and scoring, the training step and the refusals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.flows.test_contract import randomize_
from waveflow.config import MelConfig, ModelConfig
from waveflow.infer.streaming import (
    LatentStream,
    StreamingSynthesizer,
    encode_chunked,
    synthesize_chunked,
)
from waveflow.model import WaveGlow
from waveflow.nn.source import F0Predictor, sine_excitation, track_f0
from waveflow.presets import compact_tiny
from waveflow.pretrained import SAMPLE_CLIP

SR = 22050
HOP = 64


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200 * np.abs(np.log2(a / b))


@pytest.mark.parametrize("f0", [82.0, 147.0, 261.6, 440.0])
def test_tracker_finds_the_pitch_of_a_harmonic_tone(f0):
    t = np.arange(SR) / SR
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * 0.3
    est, voiced = track_f0(torch.tensor(tone, dtype=torch.float32)[None], SR, 256)
    inner = slice(4, -4)  # frames whose analysis window lies inside the tone
    assert voiced[0, inner].all()
    assert np.median(cents(est[0, inner].numpy(), f0)) < 5


def test_tracker_calls_silence_and_noise_unvoiced():
    silence = torch.zeros(1, SR)
    noise = torch.randn(1, SR, generator=torch.Generator().manual_seed(0)) * 0.3
    for signal in (silence, noise):
        f0, voiced = track_f0(signal, SR, 256)
        assert f0.shape == (1, SR // 256 + 1)
        assert voiced.float().mean() < 0.1
        assert (f0[~voiced] == 0).all()


def test_tracker_agrees_with_pyin_on_real_speech():
    """The shipped LibriVox clip: against librosa's pYIN, few octave/gross errors and similar voicing."""
    librosa = pytest.importorskip("librosa")
    audio, sr = sf.read(SAMPLE_CLIP, dtype="float32")
    audio = audio[: 6 * sr]
    ours, voiced = track_f0(torch.tensor(audio)[None], sr, 256)
    ref, ref_voiced, _ = librosa.pyin(
        audio.astype(np.float64), fmin=65, fmax=600, sr=sr, frame_length=1024, hop_length=256
    )
    n = min(len(ref), ours.shape[1])
    ours, voiced, ref, ref_voiced = ours[0, :n].numpy(), voiced[0, :n].numpy(), ref[:n], ref_voiced[:n]
    both = voiced & ref_voiced
    assert both.sum() > 50
    err = cents(ours[both], ref[both])
    assert np.median(err) < 20 and np.mean(err > 100) < 0.1
    assert np.mean(voiced != ref_voiced) < 0.25


def test_excitation_has_the_frequency_and_starting_phase_asked_for():
    frames, hop = 40, 100
    freq = torch.full((1, frames), 0.01)  # one cycle per 100 samples
    voiced = torch.ones(1, frames, dtype=torch.bool)
    exc = sine_excitation(freq, voiced, hop, frames * hop)
    n = torch.arange(frames * hop, dtype=torch.float64)
    torch.testing.assert_close(exc[0].double(), torch.sin(2 * math.pi * 0.01 * (n + 1)), atol=1e-5, rtol=0)
    shifted = sine_excitation(freq, voiced, hop, frames * hop, phase0=torch.tensor([0.25]))
    torch.testing.assert_close(
        shifted[0].double(), torch.cos(2 * math.pi * 0.01 * (n + 1)), atol=1e-5, rtol=0
    )


def test_excitation_is_silent_where_unvoiced_and_keeps_its_phase_across_gaps():
    frames, hop = 30, 50
    freq = torch.full((1, frames), 0.02)
    voiced = torch.ones(1, frames, dtype=torch.bool)
    voiced[0, 10:20] = False
    freq[0, 10:20] = 0.0  # the tracker's unvoiced frames carry no pitch
    exc = sine_excitation(freq, voiced, hop, frames * hop)
    assert exc[0, 11 * hop : 19 * hop].abs().max() == 0
    # after the gap the phase is where an unbroken sine at the same pitch would be
    n = torch.arange(frames * hop, dtype=torch.float64)
    full = torch.sin(2 * math.pi * 0.02 * (n + 1))
    torch.testing.assert_close(exc[0, 21 * hop :].double(), full[21 * hop :], atol=1e-5, rtol=0)


def source_model(**changes) -> WaveGlow:
    cfg = compact_tiny().replace(n_mels=16, hop_length=HOP, source="sine", **changes)
    torch.manual_seed(0)
    return randomize_(WaveGlow.from_config(cfg), 0.1).eval()


def test_the_excitation_changes_the_conditioning_and_the_audio():
    model = source_model()
    mel = torch.randn(1, 16, 12)
    z = torch.randn(1, 16, 12 * HOP // 16)
    t = torch.arange(12 * HOP)
    with torch.no_grad():
        own = model.inverse(z, mel, excitation=torch.sin(2 * math.pi * t / 40.0)[None])[0]
        other = model.inverse(z, mel, excitation=torch.zeros(1, 12 * HOP))[0]
    assert (own - other).abs().max() > 1e-3


def test_window_of_a_source_model_needs_and_uses_the_excitation_slice():
    model = source_model()
    frames = 12
    mel = torch.randn(2, 16, frames)
    exc = model.excitation(mel)
    assert exc.shape == (2, frames * HOP)
    full = model.condition(mel, frames * HOP)
    g = model.n_group
    for start, width in [(0, 5), (9, 20), (30, frames * HOP // g - 30)]:
        f0, f1 = model.cond_frames(start * g, (start + width) * g, frames)
        window = model.condition_window(
            mel[:, :, f0:f1], f0, start, width, frames, exc[:, start * g : (start + width) * g]
        )
        torch.testing.assert_close(window, full[:, :, start : start + width])
    with pytest.raises(ValueError, match="excitation"):
        model.condition_window(mel, 0, 0, 4, frames)


@pytest.mark.parametrize("chunk_groups", [7, 10_000])
def test_chunked_synthesis_and_scoring_of_a_source_model_are_exact(chunk_groups):
    model = source_model()
    mel = torch.randn(1, 16, 30)
    z = torch.randn(1, 16, 30 * HOP // 16)
    with torch.no_grad():
        whole = model.decode(z, mel)
        chunked = synthesize_chunked(model, mel, z, chunk_groups)
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
        z_whole, logdet_whole = model(whole, mel)
        z_chunk, logdet_chunk = encode_chunked(model, whole, mel, chunk_groups)
    torch.testing.assert_close(z_chunk, z_whole, atol=1e-4, rtol=0)
    torch.testing.assert_close(logdet_chunk, logdet_whole, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 5, 13])
def test_stream_of_a_source_model_is_exact(chunk):
    """Mel chunks in: the excitation's phase is carried from chunk to chunk, and with the exact
    context (which waits for the pitch predictor's look-ahead) the audio equals the whole decode."""
    model = source_model(source_direct=True)
    for step in model.flow.steps:  # the direct path starts at zero: give it weight
        torch.nn.init.normal_(step.coupling.conditioner.direct.weight, std=0.1)
    torch.nn.init.normal_(model.f0_predictor.out.weight, std=0.5)
    frames = 60
    mel = torch.randn(1, 16, frames)
    exc = model.excitation(mel)
    assert exc.abs().max() > 0.5  # voiced somewhere: the phase matters
    latent = LatentStream(n_group=16, sigma=0.7, generator=torch.Generator().manual_seed(5))
    z = LatentStream(n_group=16, sigma=0.7, generator=torch.Generator().manual_seed(5)).read(
        frames * HOP // 16
    )
    stream = StreamingSynthesizer(model, latent)
    with torch.no_grad():
        whole = model.decode(z, mel)[0]
        pieces = [stream.push(mel[:, :, i : i + chunk]) for i in range(0, frames, chunk)]
        pieces.append(stream.flush())
    streamed = torch.cat(pieces)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=0)
    assert stream.state.exc.shape[1] < frames * HOP  # the excitation history is trimmed
    no_phase = sine_excitation(*model.f0_predictor.predict(mel[:, :, 30:]), HOP, 30 * HOP)
    assert (no_phase - exc[:, 30 * HOP :]).abs().max() > 0.1  # restarting the phase would differ


def test_source_needs_frame_conditioning():
    with pytest.raises(ValueError, match="conditioning='frame'"):
        ModelConfig().replace(source="sine")
    with pytest.raises(ValueError, match="source_direct"):
        compact_tiny().replace(source_direct=True)
    assert compact_tiny().replace(source="sine", source_direct=True).cond_size == 16 + 16


def test_direct_path_starts_at_zero_and_carries_the_excitation():
    """``source_direct``: identity at init; once the direct map is non-zero, the audio follows the
    excitation linearly (the difference of two excitations through the last coupling's shift)."""
    cfg = compact_tiny().replace(n_mels=16, hop_length=HOP, source="sine", source_direct=True)
    torch.manual_seed(0)
    model = WaveGlow.from_config(cfg).eval()
    mel = torch.randn(1, 16, 8)
    audio = torch.randn(1, 8 * HOP) * 0.1
    with torch.no_grad():
        z, logdet = model(audio, mel)
    torch.testing.assert_close(logdet, torch.zeros(1))  # every coupling starts as the identity
    for step in model.flow.steps:
        assert step.coupling.conditioner.direct.weight.abs().max() == 0
    model = source_model(source_direct=True)
    z = torch.randn(1, 16, 8 * HOP // 16)
    with torch.no_grad():
        a = model.inverse(z, mel, excitation=torch.zeros(1, 8 * HOP))[0]
        b = model.inverse(z, mel, excitation=torch.ones(1, 8 * HOP) * 0.5)[0]
    assert (a - b).abs().max() > 1e-3


def test_folding_weight_norm_keeps_the_output():
    model = source_model()
    mel = torch.randn(1, 16, 10)
    z = torch.randn(1, 16, 10 * HOP // 16)
    with torch.no_grad():
        before = model.decode(z, mel)
        model.remove_weight_norm()
        after = model.decode(z, mel)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_the_pitch_predictor_learns_the_pitch_of_tones():
    """Mels of harmonic tones at random pitches: a few hundred steps bring the prediction within a semitone."""
    from waveflow.audio.features import MelSpectrogram

    torch.manual_seed(0)
    mel_fn = MelSpectrogram(
        sample_rate=8000, n_fft=512, win_length=512, hop_length=128, n_mels=40, f_max=4000.0
    )
    predictor = F0Predictor(40, channels=32)
    opt = torch.optim.Adam(predictor.parameters(), lr=3e-3)
    t = torch.arange(4096) / 8000

    def batch(n: int):
        f0 = torch.exp(torch.empty(n).uniform_(math.log(90), math.log(250)))  # within the classes at 8 kHz
        audio = sum(torch.sin(2 * math.pi * k * f0[:, None] * t) / k for k in range(1, 8)) * 0.2
        mel = mel_fn(audio)
        freq = (f0 / 8000)[:, None].expand(n, mel.shape[2])
        return mel, freq, torch.ones_like(freq, dtype=torch.bool)

    mel, freq, voiced = batch(16)
    before = predictor.loss(mel, freq, voiced).item()
    for _ in range(300):
        m, f, v = batch(16)
        loss = predictor.loss(m, f, v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    predicted, is_voiced = predictor.predict(mel)
    inner = slice(4, -4)
    err = cents(predicted[:, inner].numpy(), freq[:, inner].numpy())
    assert predictor.loss(mel, freq, voiced).item() < before / 3
    assert is_voiced[:, inner].all() and np.median(err) < 100


def test_vocoder_entry_points_run_a_source_model():
    from waveflow.infer.vocoder import Vocoder

    mel_config = MelConfig(
        sample_rate=8000, n_fft=256, win_length=256, hop_length=HOP, n_mels=16, f_max=4000.0
    )
    vocoder = Vocoder.from_model(source_model(), mel_config)
    vocoder.check_mel = False
    mel = torch.randn(16, 50) - 4.0
    z = torch.randn(1, 16, 50 * HOP // 16)
    with torch.no_grad():
        expected = source_model().decode(z, mel[None])
    torch.testing.assert_close(vocoder(mel, z=z)[0], expected, atol=1e-5, rtol=0)
    scored = vocoder.score(expected[0].numpy(), 8000)
    assert math.isfinite(scored["nats_per_sample"])
    audio, _ = vocoder(mel, generator=torch.Generator().manual_seed(3))
    chunks = [mel[:, i : i + 7] for i in range(0, 50, 7)]
    streamed = torch.cat(list(vocoder.stream(chunks, generator=torch.Generator().manual_seed(3))))
    torch.testing.assert_close(streamed, audio[0], atol=1e-5, rtol=0)


def test_compact_source_preset_size_and_recipe_config():
    from tests.conftest import REPO
    from waveflow.presets import compact_source
    from waveflow.train import load_config

    model = WaveGlow.from_config(compact_source())
    assert sum(p.numel() for p in model.parameters()) == 5_833_665  # under 25 MB in fp32
    config = load_config(REPO / "recipes" / "speech_corpus" / "configs" / "default.yaml")
    assert config.model == compact_source()
