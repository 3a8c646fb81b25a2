"""One inverse, many engines: every way waveflow inverts the flow against the model's own inverse.

The model is NVIDIA's fixture checkpoint (``shared/fixtures/nvidia_waveglow``), whose seeded
``infer`` output was computed by NVIDIA's code: the model's own inverse must reproduce it, and every
engine (windowed, chunked, streamed, compiled for the CPU with and without the upsampler fold, the
exported graph, the Vocoder on either engine) must reproduce the model's inverse from the same
latent. Then the noise: the same seed and latent order give the same audio from every public
synthesis entry point.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import seeded
from waveflow.checkpoint import load_model
from waveflow.infer.export import WaveGlowInference
from waveflow.infer.fast import FastWaveGlow
from waveflow.infer.streaming import StreamingSynthesizer, synthesize_chunked
from waveflow.infer.vocoder import Vocoder
from waveflow.latent import LATENT_ORDERS

TOLERANCE = 1e-5  # float32 rounding of differently ordered sums (measured differences ~1e-6)


class _FixedLatent:
    """A latent stream that hands out a given ``z`` (what StreamingSynthesizer reads)."""

    def __init__(self, z: torch.Tensor):
        self.z, self.position, self.n_group = z, 0, z.shape[1]

    def read(self, num_groups: int) -> torch.Tensor:
        out = self.z[:, :, self.position : self.position + num_groups]
        self.position += num_groups
        return out


@functools.lru_cache(maxsize=1)
def _load(folder: Path):
    model, config = load_model(folder / "waveglow_orig_checkpoint.pt.xz", fold_weight_norm=True)
    io = np.load(folder / "waveglow_io.npz")
    return model, config, {k: torch.from_numpy(io[k]) for k in ("mel", "b2_mel", "infer_sigma0p6_seed1234")}


@pytest.fixture
def fixture_model(nvidia_fixtures):
    return _load(nvidia_fixtures)  # read once per session (the tests do not change it)


def _stream(engine, mel: torch.Tensor, z: torch.Tensor, frames_per_push: int) -> torch.Tensor:
    synthesizer = StreamingSynthesizer(engine, _FixedLatent(z))
    parts = [
        synthesizer.push(mel[:, :, i : i + frames_per_push]) for i in range(0, mel.shape[2], frames_per_push)
    ]
    return torch.cat(parts + [synthesizer.flush()])[None]


def test_every_engine_runs_the_models_inverse(fixture_model):
    model, config, io = fixture_model
    mel = io["mel"]  # (1, 80, 24): 768 groups; the model's exact context is 36 groups each side
    z = model.sample_latent(1, 768, 0.6, generator=seeded(1234))  # NVIDIA's draw order
    with torch.no_grad():
        own = model.decode(z, mel)
    # NVIDIA's code, seeded the same way, computed this (the model's inverse is NVIDIA's).
    torch.testing.assert_close(own, io["infer_sigma0p6_seed1234"], atol=TOLERANCE, rtol=0)

    unfolded = FastWaveGlow.from_model(model, fold_upsampler=False)
    folded = FastWaveGlow.from_model(model, fold_upsampler=True)
    keep = (100, 600)  # groups: the window is cut down step by step to what they still need
    kept = own[:, keep[0] * 8 : keep[1] * 8]
    with torch.no_grad():
        results = {
            "plain window (keep)": (model.decode_window(mel, z, 0, keep=keep), kept),
            "plain chunked": (synthesize_chunked(model, mel, z, 64), own),
            "plain streamed": (_stream(model, mel, z, 4), own),
            "fast unfolded": (unfolded.decode(z, mel), own),
            "fast folded": (folded.decode(z, mel), own),
            "fast window (keep)": (folded.decode_window(mel, z, 0, keep=keep), kept),
            "fast chunked": (synthesize_chunked(unfolded, mel, z, 64), own),
            "fast streamed": (_stream(folded, mel, z, 4), own),
            "exported graph": (WaveGlowInference(model)(mel, z), own),
        }
        for engine in ("plain", "fast"):
            vocoder = Vocoder.from_model(model, config.mel, engine=engine)
            vocoder.check_mel = False
            results[f"Vocoder({engine}) call"] = (vocoder(mel, z=z)[0], own)
            results[f"Vocoder({engine}).decode"] = (vocoder.decode(z, mel), own)
    for name, (actual, expected) in results.items():
        diff = (actual - expected).abs().max().item()
        assert diff <= TOLERANCE, f"{name}: max |diff| {diff:.3g} from the model's own inverse"
    # the compiled engines really are other code (not the model's modules called again)
    assert (results["fast unfolded"][0] - own).abs().max() > 0


def test_chunk_windows_are_cut_to_what_the_kept_groups_need(fixture_model):
    """The plan: step k runs on keep +- sum(contexts[:k + 1]) groups, cut to the window."""
    model, _, _ = fixture_model
    plan = model.schedule.inverse_plan(768, model.flow.contexts, keep=(300, 400))
    assert [k for k, _, _ in plan.steps] == list(range(11, -1, -1))
    ranges = {k: (lo, hi) for k, lo, hi in plan.steps}
    assert ranges[11] == (300 - 36, 400 + 36) and ranges[0] == (300 - 3, 400 + 3)
    assert plan.blocks == {4: (0, 2), 8: (2, 2)} and plan.remaining == 4
    edge = model.schedule.inverse_plan(768, model.flow.contexts, keep=(0, 10))
    assert dict((k, (lo, hi)) for k, lo, hi in edge.steps)[11] == (0, 46)


@pytest.mark.parametrize("order", LATENT_ORDERS)
def test_same_seed_same_audio_from_every_entry_point(fixture_model, order):
    model, config, io = fixture_model
    mel = io["b2_mel"]  # (2, 80, 24)
    with torch.no_grad():
        reference = model.infer(mel, 0.6, generator=seeded(5), latent_order=order)
    fast = FastWaveGlow.from_model(model, fold_upsampler=False)
    outputs = {"FastWaveGlow.infer": fast.infer(mel, 0.6, generator=seeded(5), latent_order=order)}
    for engine in ("plain", "fast"):
        vocoder = Vocoder.from_model(model, config.mel, engine=engine)
        vocoder.check_mel = False
        outputs[f"Vocoder({engine})"] = vocoder(mel, sigma=0.6, generator=seeded(5), latent_order=order)[0]
        if order == "stream":  # the streamed order: decode_batch (global RNG) and the stream itself
            torch.manual_seed(9)
            outputs[f"Vocoder({engine}).decode_batch"] = vocoder.decode_batch(mel)[:, 0]
            torch.manual_seed(9)
            with torch.no_grad():
                again = model.infer(mel, 0.6, latent_order="stream")
            torch.testing.assert_close(
                outputs.pop(f"Vocoder({engine}).decode_batch"), again, atol=TOLERANCE, rtol=0
            )
            generator = seeded(5)  # the stream carries one utterance: item 0, then item 1 from the same RNG
            streamed = [
                torch.cat(
                    list(vocoder.stream([mel[i : i + 1, :, :10], mel[i : i + 1, :, 10:]], 0.6, generator))
                )
                for i in range(2)
            ]
            outputs[f"Vocoder({engine}).stream"] = torch.stack(streamed)
    for name, audio in outputs.items():
        diff = (audio - reference).abs().max().item()
        assert diff <= TOLERANCE, f"{name} ({order} order): max |diff| {diff:.3g} from WaveGlow.infer"
    # the two orders are different noise (the switch matters), each reproducible
    with torch.no_grad():
        other = model.infer(
            mel, 0.6, generator=seeded(5), latent_order="nvidia" if order == "stream" else "stream"
        )
    assert (other - reference).abs().max() > 0.01


def test_onnx_vocoder_draws_the_same_noise(tmp_path, fixture_model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from waveflow.infer.export import OnnxVocoder, export_onnx

    model, config, io = fixture_model
    vocoder = Vocoder.from_model(model, config.mel)
    vocoder.check_mel = False
    onnx_vocoder = OnnxVocoder(export_onnx(vocoder, tmp_path / "fixture.onnx"))
    onnx_vocoder.check_mel = False
    for order in LATENT_ORDERS:
        expected = vocoder(io["b2_mel"], [24, 17], generator=seeded(3), latent_order=order)[0]
        actual = onnx_vocoder(io["b2_mel"], [24, 17], generator=seeded(3), latent_order=order)[0]
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_latent_order_is_checked(fixture_model):
    model, config, io = fixture_model
    with pytest.raises(ValueError, match="latent_order must be one of stream, nvidia, got 'random'"):
        model.infer(io["mel"], 0.6, latent_order="random")
    with pytest.raises(ValueError, match="latent_order must be one of"):
        Vocoder.from_model(model, config.mel)(io["mel"], latent_order="NVIDIA")
