"""The public Vocoder API: inputs, lengths and batch consistency, noise convention, front end,
checkpoints, denoiser, round trip, likelihood, precision, mel warnings and input errors."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soxr
import torch

from tests.conftest import REPO
from tests.helpers import (  # noqa: F401  (one_torch_thread is an autouse fixture)
    SMALL_MEL,
    Payload,
    one_torch_thread,
    seeded,
    small_model,
    speech_like,
    speech_mel,
)
from tests.helpers import SMALL_SAMPLE_RATE as SAMPLE_RATE
from waveflow.audio.features import MelSpectrogram
from waveflow.checkpoint import save_checkpoint
from waveflow.infer import vocoder as vocoder_module
from waveflow.infer.denoiser import Denoiser
from waveflow.infer.fast import FastWaveGlow
from waveflow.infer.mel_guard import MelConventionWarning
from waveflow.infer.streaming import LATENT_BLOCK_GROUPS
from waveflow.infer.vocoder import Vocoder
from waveflow.interop import nvidia
from waveflow.model import WaveGlow


@pytest.fixture(scope="module")
def model() -> WaveGlow:
    return small_model()


@pytest.fixture(scope="module")
def vocoder(model) -> Vocoder:
    return Vocoder.from_model(model, SMALL_MEL)


@pytest.fixture(scope="module")
def mel(vocoder) -> torch.Tensor:
    return speech_mel(vocoder, 0.4)  # (16, 76): 0.6 s with the silence


# -- inputs -----------------------------------------------------------------------------------------
def test_numpy_torch_2d_and_3d_inputs_agree(vocoder, mel):
    reference, lengths = vocoder(mel.unsqueeze(0), generator=seeded(1))
    assert reference.shape == (1, mel.shape[1] * 64) and reference.dtype == torch.float32
    assert lengths.tolist() == [mel.shape[1] * 64]
    for variant in (mel, mel.numpy(), mel.numpy().astype(np.float64), mel.numpy()[None], mel.double()):
        audio, _ = vocoder(variant, generator=seeded(1))
        torch.testing.assert_close(audio, reference, atol=1e-6, rtol=0)


def test_big_endian_numpy_is_accepted(vocoder, mel):
    reference, _ = vocoder(mel, generator=seeded(2))
    audio, _ = vocoder(mel.numpy().astype(">f4"), generator=seeded(2))
    torch.testing.assert_close(audio, reference, atol=1e-6, rtol=0)


def test_noise_convention_is_documented_block_draw(vocoder, model, mel):
    """Item noise = torch.randn((1, n_group, LATENT_BLOCK_GROUPS)) blocks from the generator, times sigma."""
    num_groups = mel.shape[1] * 64 // 4
    assert num_groups <= LATENT_BLOCK_GROUPS
    z = torch.randn(1, 4, LATENT_BLOCK_GROUPS, generator=seeded(3))[:, :, :num_groups] * 0.7
    expected = model.decode(z, mel.unsqueeze(0)).detach()
    audio, _ = vocoder(mel, sigma=0.7, generator=seeded(3))
    torch.testing.assert_close(audio, expected, atol=1e-5, rtol=0)


def test_explicit_z_is_used_as_is(vocoder, model, mel):
    z = torch.randn(1, 4, mel.shape[1] * 16)
    audio, _ = vocoder(mel, z=z, sigma=123.0)  # sigma is ignored with an explicit z
    torch.testing.assert_close(audio, model.decode(z, mel.unsqueeze(0)).detach(), atol=1e-5, rtol=0)
    audio_2d, _ = vocoder(mel, z=z[0].numpy())
    torch.testing.assert_close(audio_2d, audio, atol=0, rtol=0)


def test_sigma_zero_decodes_the_zero_latent(vocoder, model, mel):
    """sigma 0 is the mode: the decode of z = 0, whatever the generator, and not a sigma > 0 sample."""
    expected = model.decode(torch.zeros(1, 4, mel.shape[1] * 16), mel.unsqueeze(0)).detach()
    assert expected.abs().max() > 1e-2  # the model is no identity: z = 0 does not give silence
    for generator in (None, seeded(1)):
        audio, _ = vocoder(mel, sigma=0.0, generator=generator)
        torch.testing.assert_close(audio, expected, atol=1e-5, rtol=0)
    sample, _ = vocoder(mel, sigma=0.6, generator=seeded(1))
    assert (sample - expected).abs().max() > 1e-2


# -- lengths and batches ------------------------------------------------------------------------------
def padded_batch(mels: list[torch.Tensor], pad_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    num_frames = max(m.shape[1] for m in mels)
    batch = torch.full((len(mels), mels[0].shape[0], num_frames), pad_value)
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[1]] = m
    return batch, torch.tensor([m.shape[1] for m in mels])


@pytest.fixture(scope="module")
def items(vocoder) -> list[torch.Tensor]:
    return [speech_mel(vocoder, s, seed) for seed, s in enumerate((0.3, 0.5, 0.3, 0.15))]  # two equal lengths


def test_padded_batch_equals_item_by_item(vocoder, items):
    batch, lengths = padded_batch(items, pad_value=-11.5)
    audio, audio_lengths = vocoder(batch, lengths, generator=seeded(4))
    assert audio_lengths.tolist() == [n * 64 for n in lengths.tolist()]
    generator = seeded(4)  # one-by-one calls continue the same generator, item after item
    for i, m in enumerate(items):
        single, _ = vocoder(m, generator=generator)
        n = single.shape[1]
        assert n == lengths[i] * 64
        torch.testing.assert_close(audio[i, :n], single[0], atol=1e-5, rtol=0)
        assert torch.all(audio[i, n:] == 0), "samples past the item's length must be exactly 0"


def test_padding_values_do_not_matter(vocoder, items):
    quiet, lengths = padded_batch(items, pad_value=-11.5)
    loud, _ = padded_batch(items, pad_value=3.0)
    a, _ = vocoder(quiet, lengths, generator=seeded(5))
    b, _ = vocoder(loud, lengths, generator=seeded(5))
    assert torch.equal(a, b)


def test_explicit_z_with_lengths_uses_each_items_prefix(vocoder, model, items):
    batch, lengths = padded_batch(items, pad_value=0.0)
    z = torch.randn(len(items), 4, batch.shape[2] * 16)
    audio, _ = vocoder(batch, lengths.tolist(), z=z)
    for i, m in enumerate(items):
        n = m.shape[1] * 64
        expected = model.decode(z[i : i + 1, :, : n // 4], m.unsqueeze(0)).detach()[0]
        torch.testing.assert_close(audio[i, :n], expected, atol=1e-5, rtol=0)


def test_torchaudio_style_positional_call(vocoder, items):
    specgrams, lengths = padded_batch(items, pad_value=0.0)
    waveforms, out_lengths = vocoder(specgrams, lengths.to(torch.int32))
    assert waveforms.shape == (len(items), specgrams.shape[2] * vocoder.hop_length)
    assert out_lengths.dtype == torch.int64 and out_lengths.tolist() == (lengths * 64).tolist()


def test_decode_batch_speechbrain_style(vocoder, items):
    mel, mel_lens = padded_batch(items, pad_value=0.0)
    waveforms = vocoder.decode_batch(mel, mel_lens=mel_lens, hop_len=64)
    audio, _ = vocoder(mel, mel_lens)
    assert waveforms.shape == (len(items), 1, mel.shape[2] * 64)
    for i, n in enumerate(mel_lens.tolist()):
        assert torch.all(waveforms[i, 0, n * 64 :] == 0)
    with torch.random.fork_rng():
        torch.manual_seed(6)
        a = vocoder.decode_batch(mel, mel_lens)
        torch.manual_seed(6)
        b, _ = vocoder(mel, mel_lens)
    torch.testing.assert_close(a[:, 0], b, atol=0, rtol=0)
    assert audio.shape == b.shape
    with pytest.raises(ValueError, match="hop_len=256 but this vocoder's hop_length is 64"):
        vocoder.decode_batch(mel, mel_lens, hop_len=256)


def test_long_mel_is_chunked_with_the_same_result(model, items):
    whole = Vocoder.from_model(model, SMALL_MEL)
    chunked = Vocoder.from_model(model, SMALL_MEL)
    chunked.chunk_frames = 16  # 256 groups per window core, context 28 groups each side
    batch, lengths = padded_batch(items, pad_value=0.0)
    a, _ = whole(batch, lengths, generator=seeded(7))
    b, _ = chunked(batch, lengths, generator=seeded(7))
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


# -- engines ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fold_limit", [0, 2**40], ids=["unfolded", "folded"])
@pytest.mark.parametrize("chunk_frames", [16, 384], ids=["chunked", "whole"])
def test_fast_engine_gives_the_plain_engines_audio(monkeypatch, model, items, fold_limit, chunk_frames):
    monkeypatch.setattr(vocoder_module, "FOLD_MAX_BYTES", fold_limit)
    batch, lengths = padded_batch(items, pad_value=0.0)
    outputs = {}
    for engine in ("auto", "fast", "plain"):
        v = Vocoder.from_model(model, SMALL_MEL, engine=engine)
        v.chunk_frames = chunk_frames
        outputs[engine], _ = v(batch, lengths, generator=seeded(8))
        if engine == "auto":
            assert v.inverse_engine().fold_upsampler == (fold_limit > 0)
        if engine == "fast":
            assert v.inverse_engine().fold_upsampler  # "fast" always folds
    torch.testing.assert_close(outputs["fast"], outputs["plain"], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["auto"], outputs["plain"], atol=1e-5, rtol=0)
    assert (outputs["fast"] - outputs["plain"]).abs().max() > 0  # really two different code paths


def test_auto_engine_folds_what_the_budget_allows(monkeypatch, model):
    from waveflow.infer.fast import folded_layer_bytes

    monkeypatch.setattr(vocoder_module, "FOLD_MAX_BYTES", 2 * folded_layer_bytes(model))
    assert Vocoder.from_model(model, SMALL_MEL).inverse_engine().folded_layers == 2  # of 4 steps x 3 layers
    assert Vocoder.from_model(model, SMALL_MEL, engine="fast").inverse_engine().folded_layers == 12


def test_engine_choice_and_errors(model):
    assert isinstance(Vocoder.from_model(model, SMALL_MEL).inverse_engine(), FastWaveGlow)
    plain = Vocoder.from_model(model, SMALL_MEL, engine="plain")
    assert plain.inverse_engine() is plain.model
    bf16 = Vocoder.from_model(model, SMALL_MEL, precision="bf16")
    assert bf16.inverse_engine() is bf16.model  # auto: plain
    with pytest.raises(ValueError, match="engine must be one of auto, fast, plain, got 'turbo'"):
        Vocoder.from_model(model, SMALL_MEL, engine="turbo")
    with pytest.raises(ValueError, match="engine='fast' runs on the CPU in fp32"):
        Vocoder.from_model(model, SMALL_MEL, precision="bf16", engine="fast")
    assert "engine=auto" in repr(Vocoder.from_model(model, SMALL_MEL))
    # windows: longer with the fast engine (it holds one layer's conditioning at a time)
    v = Vocoder.from_model(model, SMALL_MEL)
    assert v.chunk_frames is None
    groups = v.hop_length // v.n_group  # per frame
    assert (v._chunk_groups(v.inverse_engine()), v._chunk_groups(v.model)) == (2048 * groups, 384 * groups)
    v.chunk_frames = 16
    assert v._chunk_groups(v.inverse_engine()) == v._chunk_groups(v.model) == 16 * groups
    with pytest.raises(ValueError, match="chunk_frames must be a positive integer or None"):
        Vocoder(small_model(), SMALL_MEL, chunk_frames=0)


# -- construction and properties -------------------------------------------------------------------
def test_from_checkpoint_knows_its_settings(tmp_path, model, mel, vocoder):
    path = save_checkpoint(tmp_path / "small.pt", model, SMALL_MEL)
    loaded = Vocoder.from_checkpoint(path)
    assert (loaded.sample_rate, loaded.hop_length, loaded.n_mels) == (8000, 64, 16)
    assert loaded.receptive_field == model.receptive_field == 228
    assert loaded.context_samples == 112  # 4 flows * 7 groups of WaveNet context * n_group 4
    assert loaded.mel_config == SMALL_MEL and loaded.precision == "fp32"
    assert loaded.device == torch.device("cpu")
    assert not any("parametrizations" in k for k in loaded.model.state_dict()), "weight norm must be folded"
    assert not loaded.model.training
    a, _ = loaded(mel, generator=seeded(8))
    b, _ = vocoder(mel, generator=seeded(8))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_from_model_leaves_the_callers_model_untouched(model, mel):
    reference = model.decode(torch.ones(1, 4, 80) * 0.1, mel[None, :, :20]).detach()
    vocoder = Vocoder.from_model(model, SMALL_MEL, precision="bf16")
    assert vocoder.precision == "bf16"
    assert any("parametrizations" in k for k in model.state_dict())
    assert next(model.parameters()).dtype == torch.float32
    after = model.decode(torch.ones(1, 4, 80) * 0.1, mel[None, :, :20]).detach()
    assert torch.equal(reference, after)


def test_mismatched_mel_config_is_refused(model):
    with pytest.raises(ValueError, match="n_mels"):
        Vocoder.from_model(model, SMALL_MEL.replace(n_mels=80))


def test_train_mode_is_refused(vocoder):
    with pytest.raises(ValueError, match="inference only"):
        vocoder.train()
    assert vocoder.eval() is vocoder


def test_precision_choices(model, mel):
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        Vocoder.from_model(model, SMALL_MEL, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        Vocoder.from_model(model, SMALL_MEL, precision="half")
    bf16 = Vocoder.from_model(model, SMALL_MEL, precision="bf16")
    fp32 = Vocoder.from_model(model, SMALL_MEL)
    a, _ = bf16(mel, sigma=0.0)
    b, _ = fp32(mel, sigma=0.0)
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    # bf16 keeps ~3 significant digits; the audio should still follow the fp32 result closely.
    assert (a - b).norm() / b.norm() < 0.1


def test_fp16_checkpoint_on_cpu_is_refused(tmp_path, model):
    path = save_checkpoint(tmp_path / "small.pt", model, SMALL_MEL)
    with pytest.raises(ValueError, match="fp16"):
        Vocoder.from_checkpoint(path, precision="fp16")
    with pytest.raises(ValueError, match="not a device"):
        Vocoder.from_checkpoint(path, device="gpu:7")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_and_to(model, mel):
    vocoder = Vocoder.from_model(model, SMALL_MEL).to("cuda")
    reference, _ = vocoder(mel, sigma=0.0)
    vocoder(mel, denoise=0.05)
    assert vocoder.denoiser.bias_spec.device.type == "cuda"
    half = Vocoder.from_model(model, SMALL_MEL, device="cuda", precision="fp16")
    audio, _ = half(mel, sigma=0.0)
    assert audio.dtype == torch.float32 and (audio - reference).norm() / reference.norm() < 0.05


# -- front end ----------------------------------------------------------------------------------------
def test_mel_uses_the_checkpoint_front_end(vocoder):
    audio = speech_like(4000, SAMPLE_RATE)
    expected = MelSpectrogram.from_config(SMALL_MEL)(torch.from_numpy(audio))
    torch.testing.assert_close(vocoder.mel(audio, SAMPLE_RATE), expected, atol=0, rtol=0)
    batch = vocoder.mel(np.stack([audio, audio]), SAMPLE_RATE)
    assert batch.shape == (2, 16, 4000 // 64 + 1)


def test_mel_resamples_other_rates(vocoder):
    audio_16k = speech_like(8000, 16000)
    resampled = soxr.resample(audio_16k, 16000, SAMPLE_RATE, quality="HQ")
    expected = MelSpectrogram.from_config(SMALL_MEL)(torch.from_numpy(resampled))
    torch.testing.assert_close(vocoder.mel(audio_16k, 16000), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        vocoder.mel(audio_16k, 0)


# -- denoiser, round trip, likelihood ---------------------------------------------------------------------
def test_denoiser_is_built_lazily_from_the_model(model, items):
    vocoder = Vocoder.from_model(model, SMALL_MEL)
    batch, lengths = padded_batch(items, pad_value=0.0)
    plain, _ = vocoder(batch, lengths, generator=seeded(9))
    assert vocoder.denoiser is None
    denoised, _ = vocoder(batch, lengths, denoise=0.5, generator=seeded(9))
    assert isinstance(vocoder.denoiser, Denoiser)
    assert "denoiser" in dict(vocoder.named_children())  # so .to(device) moves it
    reference = Denoiser(vocoder.model, n_fft=256, hop_length=64, win_length=256)
    for i, n in enumerate((lengths * 64).tolist()):
        expected = reference(plain[i : i + 1, :n], 0.5)[0]
        torch.testing.assert_close(denoised[i, :n], expected, atol=1e-5, rtol=0)
        assert torch.all(denoised[i, n:] == 0)
    assert (denoised - plain).abs().max() > 1e-3


def test_encode_decode_round_trip(vocoder, mel):
    audio = torch.from_numpy(speech_like(mel.shape[1] * 64 - 64, SAMPLE_RATE))
    z = vocoder.encode(audio, mel)
    assert z.shape == (4, audio.shape[0] // 4)
    torch.testing.assert_close(vocoder.decode(z, mel), audio, atol=1e-4, rtol=0)
    full = torch.randn(2, 4, mel.shape[1] * 16)  # z covering exactly frames * hop: the chunked path
    mels = mel.unsqueeze(0).expand(2, -1, -1)
    torch.testing.assert_close(vocoder.encode(vocoder.decode(full, mels), mels), full, atol=1e-4, rtol=0)


def test_score_is_the_models_exact_nll(vocoder, model):
    audio = speech_like(3000, SAMPLE_RATE)
    result = vocoder.score(audio, SAMPLE_RATE)
    mel = MelSpectrogram.from_config(SMALL_MEL)(torch.from_numpy(audio))
    with torch.no_grad():
        expected = float(model.nll(torch.from_numpy(audio[:3000]).unsqueeze(0), mel.unsqueeze(0), 1.0)[0])
    assert result["num_samples"] == 3000 and result["sample_rate"] == SAMPLE_RATE
    assert result["nats_per_sample"] == pytest.approx(expected, abs=1e-4)
    assert result["bits_per_sample"] == pytest.approx(expected / math.log(2), abs=1e-4)
    resampled = vocoder.score(soxr.resample(audio, SAMPLE_RATE, 16000, quality="HQ"), 16000)
    assert math.isfinite(resampled["nats_per_sample"])
    with pytest.raises(ValueError, match="one clip"):
        vocoder.score(np.stack([audio, audio]), SAMPLE_RATE)


# -- mel convention warnings ---------------------------------------------------------------------------------
def test_one_warning_per_call_for_a_foreign_convention(model, mel):
    vocoder = Vocoder.from_model(model, SMALL_MEL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocoder(mel)
    assert not caught, [str(w.message) for w in caught]
    log10_mel = mel / math.log(10.0)  # the same mel in log10 (floor -5 instead of -11.51)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocoder(torch.stack([log10_mel, log10_mel]))
    assert len(caught) == 1 and caught[0].category is MelConventionWarning
    assert "log10" in str(caught[0].message)
    assert caught[0].filename == __file__, "the warning must point at the caller's line"
    vocoder.check_mel = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocoder(log10_mel)
    assert not caught


# -- input errors ------------------------------------------------------------------------------------------
ERRORS = {
    "1-D mel": (lambda m: {"mel": m[0]}, r"2-D \(n_mels, frames\) or 3-D"),
    "4-D mel": (lambda m: {"mel": m[None, None]}, "2-D"),
    "wrong n_mels": (lambda m: {"mel": torch.randn(20, 30)}, "n_mels=16"),
    "time-major": (lambda m: {"mel": m.T}, "time-major"),
    "linear spectrogram": (lambda m: {"mel": torch.randn(129, 30)}, "linear-frequency spectrogram"),
    "NaN": (lambda m: {"mel": torch.where(torch.arange(m.shape[1]) == 5, float("nan"), m)}, "16 NaN/Inf"),
    "Inf": (lambda m: {"mel": m.clone().fill_(float("inf"))}, "NaN/Inf"),
    "no frames": (lambda m: {"mel": m[:, :0]}, "no items or no frames"),
    "long lengths": (
        lambda m: {"mel": m, "lengths": [m.shape[1] + 1]},
        "lengths\\[0\\] = 77 exceeds the mel's 76 frames",
    ),
    "zero length": (lambda m: {"mel": m, "lengths": [0]}, "at least one frame"),
    "lengths count": (lambda m: {"mel": m, "lengths": [5, 6]}, "one entry per item"),
    "fractional lengths": (lambda m: {"mel": m, "lengths": torch.tensor([2.5])}, "whole numbers"),
    "negative sigma": (lambda m: {"mel": m, "sigma": -0.1}, "sigma must be a finite number >= 0"),
    "NaN sigma": (lambda m: {"mel": m, "sigma": float("nan")}, "sigma"),
    "negative denoise": (lambda m: {"mel": m, "denoise": -1.0}, "denoise"),
    "integer numpy": (lambda m: {"mel": (m.numpy() * 100).astype(np.int16)}, "int16.*convert to float"),
    "bool numpy": (lambda m: {"mel": m.numpy() > 0}, "floating-point values"),
    "integer tensor": (lambda m: {"mel": m.long()}, "floating-point tensor"),
    "list": (lambda m: {"mel": m.tolist()}, "torch.Tensor or a numpy array"),
    "z shape": (
        lambda m: {"mel": m, "z": torch.randn(1, 4, 10)},
        r"z must have shape \(1, 4, 1216\) for 76 frames",
    ),
    "z and generator": (
        lambda m: {"mel": m, "z": torch.randn(1, 4, 1216), "generator": seeded(0)},
        "either z",
    ),
    "NaN z": (lambda m: {"mel": m, "z": torch.full((1, 4, 1216), float("nan"))}, "z contains NaN"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_input_errors_are_clear(vocoder, mel, case):
    build, message = ERRORS[case]
    with pytest.raises(ValueError, match=message):
        vocoder(**build(mel))


# -- checkpoint safety -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "wrap",
    [
        lambda evil: {"format": "waveflow", "format_version": 1, "config": {}, "state_dict": {"x": evil}},
        lambda evil: {"model": evil, "iteration": 1},  # NVIDIA/waveglow training checkpoint
        lambda evil: {"epoch": 1, "config": {}, "state_dict": evil},  # DeepLearningExamples
    ],
    ids=["waveflow", "nvidia", "dle"],
)
def test_from_checkpoint_never_runs_code_from_the_file(tmp_path, wrap):
    control_marker, marker = tmp_path / "control-ran", tmp_path / "payload-ran"
    control = io.BytesIO()
    torch.save(wrap(Payload(control_marker)), control)
    control.seek(0)
    torch.load(control, weights_only=False)
    assert control_marker.exists(), "control: the payload does execute under a plain torch.load"

    path = tmp_path / "evil.pt"
    torch.save(wrap(Payload(marker)), path)
    with pytest.raises(ValueError) as info:
        Vocoder.from_checkpoint(path)
    assert not marker.exists()
    assert isinstance(info.value, nvidia.UnsafeCheckpointError) or "pickled object" in str(info.value)
    assert str(path) in str(info.value)


def test_import_waveflow_is_light():
    code = (
        "import sys, waveflow; assert 'torch' not in sys.modules and 'soundfile' not in sys.modules; "
        "from waveflow import Vocoder; assert Vocoder.__name__ == 'Vocoder'; "
        "assert 'soundfile' not in sys.modules and 'onnx' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- NVIDIA checkpoints ---------------------------------------------------------------------------------------
@pytest.mark.fixtures
@pytest.mark.parametrize("name", ["waveglow_orig_checkpoint.pt.xz", "waveglow_dle_hub_checkpoint.pt.xz"])
def test_nvidia_checkpoint_through_the_vocoder(nvidia_fixtures, name):
    """NVIDIA's own outputs: sigma 0, the seeded sigma 0.6 sample (NVIDIA's draw order as z), denoiser, front end."""
    io_arrays = np.load(nvidia_fixtures / "waveglow_io.npz")
    vocoder = Vocoder.from_checkpoint(nvidia_fixtures / name)
    assert (vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels) == (22050, 256, 80)
    mel = io_arrays["mel"]  # (1, 80, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real Tacotron2 mel must not look foreign
        audio, lengths = vocoder(mel, sigma=0.0)
    assert lengths.tolist() == [6144]
    np.testing.assert_allclose(audio.numpy(), io_arrays["infer_sigma0"], atol=1e-5, rtol=0)
    z = vocoder.model.sample_latent(1, 768, 0.6, seeded(1234))
    audio, _ = vocoder(mel, z=z)
    np.testing.assert_allclose(audio.numpy(), io_arrays["infer_sigma0p6_seed1234"], atol=1e-5, rtol=0)
    denoised, _ = vocoder(mel, sigma=0.0, denoise=0.1)
    np.testing.assert_allclose(denoised.numpy(), io_arrays["denoised_infer"][:, 0], atol=1e-5, rtol=0)
    front_end = np.load(nvidia_fixtures / "mel_frontend.npz")
    mel_ours = vocoder.mel(front_end["waveform"], 22050)
    np.testing.assert_allclose(mel_ours.numpy(), front_end["mel"], atol=1e-4, rtol=0)
