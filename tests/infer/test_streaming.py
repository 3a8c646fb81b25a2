"""Chunked and streaming synthesis: the latent stream, exactness with receptive-field context,
latency with less context, bounded state, errors, and the peak-memory tool."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import (  # noqa: F401  (one_torch_thread is an autouse fixture)
    SMALL_MEL,
    SMALL_MODEL,
    one_torch_thread,
    seeded,
    small_model,
    speech_mel,
)
from waveflow.infer.mel_guard import MelConventionWarning
from waveflow.infer.streaming import (
    LATENT_BLOCK_GROUPS,
    LatentStream,
    StreamingSynthesizer,
    context_groups,
    decode_window,
    frames_for_samples,
    synthesize_chunked,
)
from waveflow.infer.vocoder import Vocoder
from waveflow.model import WaveGlow
from waveflow.presets import glow


@pytest.fixture(scope="module")
def model() -> WaveGlow:
    return small_model()


@pytest.fixture(scope="module")
def vocoder(model) -> Vocoder:
    return Vocoder.from_model(model, SMALL_MEL)


@pytest.fixture(scope="module")
def mel(vocoder) -> torch.Tensor:
    return speech_mel(vocoder, 0.8, seed=3)  # (16, 126)


def chunks_of(mel: torch.Tensor, sizes: list[int]):
    """Cut ``mel`` (n_mels, F) into consecutive chunks of the given sizes (the last one repeats)."""
    start, k = 0, 0
    while start < mel.shape[1]:
        size = sizes[min(k, len(sizes) - 1)]
        yield mel[:, start : start + size]
        start, k = start + size, k + 1


# -- latent stream ----------------------------------------------------------------------------------
def test_latent_stream_reads_are_one_sequence():
    whole = LatentStream(4, 0.5, seeded(0), block_groups=16).read(100)
    stream = LatentStream(4, 0.5, seeded(0), block_groups=16)
    parts = torch.cat([stream.read(n) for n in (0, 3, 16, 1, 50, 30)], dim=2)
    assert torch.equal(parts, whole) and stream.position == 100
    # The documented draw: consecutive torch.randn((1, n_group, block)) calls, times sigma.
    generator = seeded(0)
    blocks = torch.cat([torch.randn(1, 4, 16, generator=generator) for _ in range(7)], dim=2)
    torch.testing.assert_close(whole, 0.5 * blocks[:, :, :100], atol=0, rtol=0)


def test_latent_stream_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sigma"):
        LatentStream(4, -1.0)
    with pytest.raises(ValueError, match="block_groups"):
        LatentStream(4, block_groups=0)
    with pytest.raises(ValueError, match="num_groups"):
        LatentStream(4).read(-1)
    assert LATENT_BLOCK_GROUPS >= 1024


# -- windows and chunks ----------------------------------------------------------------------------------
def test_context_matches_the_receptive_field(model):
    assert model.receptive_field == model.n_group * (2 * context_groups(model) + 1)


def test_frames_for_samples_covers_exactly(model):
    # hop 64, kernel 256: frame f reaches samples [64 f, 64 f + 256)
    assert frames_for_samples(model, 0, 64, 100) == (0, 1)
    assert frames_for_samples(model, 256, 320, 100) == (1, 5)
    assert frames_for_samples(model, 255, 257, 100) == (0, 5)
    assert frames_for_samples(model, 6000, 6400, 100) == (90, 100)


@pytest.mark.parametrize("chunk_groups", [29, 100, 10_000])
def test_synthesize_chunked_equals_one_shot(model, mel, chunk_groups):
    mels = torch.stack([mel, mel.flip(1)])  # (2, n_mels, F)
    z = torch.randn(2, 4, mel.shape[1] * 16, generator=seeded(1))
    with torch.no_grad():
        reference = model.decode(z, mels)
        chunked = synthesize_chunked(model, mels, z, chunk_groups)
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=0)


def test_synthesize_chunked_handles_every_flow_variant(mel):
    """Early outputs, ActNorm, LU mixing and a log-scale clamp all go through the windowed inverse."""
    config = glow().replace(
        n_mels=16, hop_length=64, upsample_kernel_size=256, n_flows=5, n_group=8, n_early_every=2,
        n_early_size=2, log_scale_clamp=3.0, wavenet=SMALL_MODEL.wavenet,
    )  # fmt: skip
    model = small_model(config)
    z = torch.randn(1, 8, mel.shape[1] * 8, generator=seeded(2))
    with torch.no_grad():
        reference = model.decode(z, mel[None])
        chunked = synthesize_chunked(model, mel[None], z, 37)
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=0)


def test_a_window_without_context_is_wrong(model, mel):
    """Control for the tests above: the context really matters (they could fail)."""
    z = torch.randn(1, 4, mel.shape[1] * 16, generator=seeded(3))
    with torch.no_grad():
        reference = model.decode(z, mel[None])
        a, b = 300, 400
        f0, f1 = frames_for_samples(model, a * 4, b * 4, mel.shape[1])
        cut = decode_window(model, mel[None, :, f0:f1], z[:, :, a:b], a, f0)
    assert (cut - reference[:, a * 4 : b * 4]).abs().max() > 1e-2


# -- streaming ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [[1], [5], [3, 1, 17, 2], [200]], ids=["1", "5", "mixed", "all-at-once"])
def test_stream_equals_offline_with_receptive_field_context(model, vocoder, mel, sizes):
    """The stream equals the model's own whole-sequence decode of the seed's latent (the documented
    draw, checked above), which is also what the vocoder's offline call gives for that seed."""
    z = LatentStream(4, 0.6, seeded(4)).read(mel.shape[1] * 16)
    with torch.no_grad():
        whole = model.decode(z, mel[None])[0]
    pieces = list(vocoder.stream(chunks_of(mel, sizes), generator=seeded(4)))
    streamed = torch.cat(pieces)
    assert streamed.shape == (mel.shape[1] * 64,) and streamed.dtype == torch.float32
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=0)
    offline, _ = vocoder(mel, generator=seeded(4))
    torch.testing.assert_close(streamed, offline[0], atol=1e-4, rtol=0)


def test_stream_with_explicit_latent_and_overlap_is_still_exact(model, vocoder, mel):
    """With more right context than needed, the cross-faded overlap blends two exact estimates."""
    num_groups = mel.shape[1] * 16
    z = LatentStream(4, 0.6, seeded(5)).read(num_groups)
    with torch.no_grad():
        whole = model.decode(z, mel[None])[0]
    latent = LatentStream(4, 0.6, seeded(5))
    stream = vocoder.stream(chunks_of(mel, [4]), latent=latent, right_context=2 * 112, overlap=64)
    torch.testing.assert_close(torch.cat(list(stream)), whole, atol=1e-4, rtol=0)


def test_reduced_right_context_lowers_latency(model, mel):
    hop = 64
    right = 40  # samples: rounded up to 10 groups
    synth = StreamingSynthesizer(model, LatentStream(4, 0.6, seeded(6)), right_context=right, overlap=8)
    assert synth.latency_samples == 40
    emitted = 0
    with torch.no_grad():
        for k, chunk in enumerate(chunks_of(mel, [2]), start=1):
            emitted += synth.push(chunk[None]).shape[0]
            # Everything but the look-ahead is out (pushes too short for the overlap may wait).
            assert min(k * 2, mel.shape[1]) * hop - 40 - 8 <= emitted <= min(k * 2, mel.shape[1]) * hop - 40
        emitted += synth.flush().shape[0]
    assert emitted == mel.shape[1] * hop


def test_less_context_is_approximate_but_close(model, vocoder, mel):
    with torch.no_grad():
        whole = model.decode(LatentStream(4, 0.6, seeded(7)).read(mel.shape[1] * 16), mel[None])[0]
    cheap = torch.cat(
        list(vocoder.stream(chunks_of(mel, [8]), generator=seeded(7), left_context=48, right_context=48))
    )
    error = (cheap - whole).abs().max()
    assert 1e-4 < error < whole.abs().max()


def test_stream_state_stays_bounded(model):
    """The mel history and latent kept between steps do not grow with the stream's length."""
    synth = StreamingSynthesizer(model, LatentStream(4, 0.6, seeded(8)))
    mel = -5.0 + torch.randn(1, 16, 4)
    sizes = []
    with torch.no_grad():
        for _ in range(60):
            synth.push(mel)
            sizes.append(
                (synth.state.mel.shape[2], synth.state.z.shape[2] if synth.state.z is not None else 0)
            )
    assert synth.state.frames_received == 240 and synth.state.emitted > 0
    # Bounds: frames reaching back L + kernel samples (2 + 4 frames) plus a push; latent L + R + a push.
    assert max(s for s, _ in sizes[20:]) <= max(s for s, _ in sizes[:20]) <= 12
    assert max(s for _, s in sizes[20:]) <= max(s for _, s in sizes[:20]) <= 28 + 28 + 16 + 16


def test_stream_errors(model, vocoder, mel):
    latent = LatentStream(4)
    with pytest.raises(ValueError, match="overlap .* cannot exceed the right context"):
        StreamingSynthesizer(model, latent, right_context=8, overlap=16)
    with pytest.raises(ValueError, match="left_context must be a non-negative"):
        StreamingSynthesizer(model, latent, left_context=-1)
    with pytest.raises(ValueError, match="n_group=8"):
        StreamingSynthesizer(model, LatentStream(8))
    with pytest.raises(ValueError, match="either latent or generator"):
        vocoder.stream([mel], latent=latent, generator=seeded(0))
    with pytest.raises(ValueError, match="batch size 2"):
        list(vocoder.stream([torch.stack([mel, mel])]))
    with pytest.raises(ValueError, match="n_mels=16"):
        list(vocoder.stream([mel[:8]]))
    synth = StreamingSynthesizer(model, latent)
    with torch.no_grad():
        synth.flush()
        with pytest.raises(ValueError, match="finished"):
            synth.push(mel[None])
    assert list(vocoder.stream([])) == []


def test_stream_does_not_leak_no_grad_into_the_consumer(vocoder, mel):
    for _ in vocoder.stream(chunks_of(mel, [50])):
        assert torch.is_grad_enabled()


def test_stream_checks_the_convention_once(vocoder, mel):
    """Small chunks of a correct mel raise nothing; a log10 stream raises exactly one warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(vocoder.stream(chunks_of(mel, [3])))
        assert not caught, [str(w.message) for w in caught]
        list(vocoder.stream(chunks_of(mel / math.log(10.0), [3])))
    assert len(caught) == 1 and issubclass(caught[0].category, MelConventionWarning)
    assert caught[0].filename == __file__


# -- peak-memory tool --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["forward", "stream"])
def test_stream_memory_tool_smoke(path):
    # A fresh process: the tool reports the process's lifetime peak RSS, and this test process has
    # held other tests' models.
    argv = ["--preset", "waveglow_tiny", "--minutes", "0.01", "--path", path, "--chunk-frames", "16"]
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "stream_memory.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["within_limit"] is True
    assert report["num_frames"] == round(0.01 * 60 * 22050 / 256) == 52
    assert report["num_samples"] == 52 * 256 and report["path"] == path
    assert report["peak_rss_mb"] <= report["limit_mb"]  # the flag agrees with the numbers it reports
