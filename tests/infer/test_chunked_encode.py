"""Encoding and scoring in windows: the exact likelihood of a long recording with bounded memory.

The flow's forward is a per-window function of audio and mel: with ``H`` groups of context on
each side of the kept groups (or a sequence edge), a window's latent and per-position log-det
equal the whole sequence's. These tests hold the chunked path to the model's own forward for the
WaveGlow family (with and without ActNorm / LU mixing) and the compact family, and check that the
context is what makes it exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import (  # noqa: F401  (one_torch_thread is an autouse fixture)
    SMALL_MEL,
    SMALL_MODEL,
    SMALL_SAMPLE_RATE,
    one_torch_thread,
    small_model,
    speech_like,
)
from waveflow import losses
from waveflow.infer.streaming import context_groups, encode_chunked, encode_window
from waveflow.infer.vocoder import Vocoder
from waveflow.presets import compact_tiny

CONFIGS = {
    "waveglow": SMALL_MODEL,
    "glow_actnorm_lu": SMALL_MODEL.replace(mixing="conv1x1_lu", actnorm=True),
    "compact": compact_tiny().replace(n_mels=16, hop_length=SMALL_MEL.hop_length),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS), ids=sorted(CONFIGS))
def case(request):
    model = small_model(CONFIGS[request.param])
    vocoder = Vocoder.from_model(model, SMALL_MEL)
    audio = speech_like(int(1.3 * SMALL_SAMPLE_RATE), SMALL_SAMPLE_RATE, seed=5)
    mel = vocoder.mel(audio, SMALL_SAMPLE_RATE)  # (n_mels, F)
    covered = model.samples_covered(mel.shape[1])
    num_samples = min(len(audio), covered) // model.n_group * model.n_group
    clip = torch.from_numpy(audio[:num_samples]).unsqueeze(0)
    return model, vocoder, clip, mel.unsqueeze(0)


def test_chunked_forward_equals_the_whole_forward(case):
    model, _, clip, mel = case
    num_groups = clip.shape[1] // model.n_group
    chunk = max(1, num_groups // 7)  # several windows, most of them cut by context
    assert context_groups(model) > 0 and num_groups > 3 * chunk
    with torch.no_grad():
        z_ref, logdet_ref = model.forward(clip, mel)
        z, logdet = encode_chunked(model, clip, mel, chunk)
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logdet, logdet_ref, rtol=1e-5, atol=1e-3)


def test_a_window_without_context_is_not_exact(case):
    """The control: keep the middle groups of a window with no context around them and the latent
    differs, so the equality above is owed to the context, not to a model too simple to tell."""
    model, _, clip, mel = case
    g = model.n_group
    num_groups = clip.shape[1] // g
    a, b = num_groups // 3, num_groups // 3 + 8
    f0, f1 = model.cond_frames(a * g, b * g, mel.shape[2])
    with torch.no_grad():
        z_ref, _ = model.forward(clip, mel)
        z_exact, _ = encode_window(
            model, mel, clip[:, 0 : num_groups * g], 0, 0, keep=(a, b), num_frames=mel.shape[2]
        )
        z_cut, _ = encode_window(
            model, mel[:, :, f0:f1], clip[:, a * g : b * g], a, f0, num_frames=mel.shape[2]
        )
    torch.testing.assert_close(z_exact, z_ref[:, :, a:b], rtol=1e-5, atol=1e-5)
    assert (z_cut - z_ref[:, :, a:b]).abs().max() > 1e-3


def test_vocoder_score_and_encode_in_windows_match_the_model(case):
    model, vocoder, clip, mel = case
    windowed = Vocoder.from_model(model, SMALL_MEL)
    windowed.chunk_frames = 3  # windows of 3 frames (plus context)
    with torch.no_grad():
        nll_ref = float(model.nll(clip, mel)[0])
        z_ref = model.encode(clip, mel)[0]
    scores = windowed.score(clip[0].numpy(), SMALL_SAMPLE_RATE)
    assert scores["num_samples"] == clip.shape[1]
    assert scores["nats_per_sample"] == pytest.approx(nll_ref, rel=1e-5, abs=1e-5)
    torch.testing.assert_close(windowed.encode(clip[0], mel[0]), z_ref, rtol=1e-5, atol=1e-5)
    # and the NLL is the one losses.nll gives from the whole forward
    with torch.no_grad():
        z, logdet = model.forward(clip, mel)
    assert float(losses.nll(z, logdet)[0]) == pytest.approx(scores["nats_per_sample"], rel=1e-5, abs=1e-5)
    assert np.isfinite(scores["bits_per_sample"])
