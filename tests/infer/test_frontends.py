"""TTS front ends (waveflow.infer.frontends).

Each toolkit's mel is built from a wav the way the toolkit documents it -- with librosa here (always
run), and with the toolkit's own code where it imports (ESPnet's LogMelFbank and GlobalMVN, Coqui's
AudioProcessor, SpeechBrain's mel_spectrogram, torchaudio's MelSpectrogram; skipped, with the reason,
where it does not install beside this torch) -- converted by its table entry, and compared with
waveflow's own mel of the same wav and analysis: they agree to ATOL in the natural-log domain (the
float32 FFT against librosa's float64 one). Then: ``Vocoder(mel_from=..., stats=...)`` converts every
mel it receives (calls, decode_batch, stream, encode/decode), mismatched front ends and wrong inputs
are named, and Kaldi statistics files are read.
"""

from __future__ import annotations

import math
import struct
import warnings

import librosa
import numpy as np
import pytest
import torch

from tests.conftest import speech_like
from tests.infer.test_vocoder import (  # noqa: F401  (one_torch_thread is an autouse fixture)
    SMALL_MEL,
    one_torch_thread,
    small_model,
)
from waveflow.audio.features import MelSpectrogram
from waveflow.config import MelConfig
from waveflow.infer import mel_guard
from waveflow.infer.frontends import (
    FRONTEND_NAMES,
    FRONTENDS,
    FrontendMismatchWarning,
    MelAdapter,
    get_frontend,
)
from waveflow.infer.vocoder import Vocoder

SR = 22050
# Converted front-end mels against waveflow's own, natural-log units: measured up to 8e-5 (float32 FFT
# and filterbank against librosa's float64); a wrong log base, floor, dB reference or band is off by
# more than 0.1.
ATOL = 2e-4
LN10 = math.log(10.0)


def utterance(seed: int = 3, seconds: float = 1.0, sample_rate: int = SR) -> np.ndarray:
    """Speech-like audio with digital silence at both ends (so every floor is reached)."""
    pad = np.zeros(int(0.2 * sample_rate), np.float32)
    return np.concatenate([pad, speech_like(int(seconds * sample_rate), sample_rate, seed), pad])


def own_mel(config: MelConfig, audio: np.ndarray) -> torch.Tensor:
    """waveflow's mel of ``audio`` in ``config``'s convention, float64 ``(n_mels, frames)``."""
    return MelSpectrogram.from_config(config)(torch.from_numpy(audio)).double()


def target_of(name: str) -> MelConfig:
    """A vocoder trained on ``name``'s analysis, in waveflow's default log convention (ln, 1e-5)."""
    return FRONTENDS[name].mel.replace(log="ln", log_floor=1e-5)


# -- each toolkit's documented mel, with librosa ----------------------------------------------------
def _magnitude(audio: np.ndarray, *, center: bool = True, eps: float = 0.0) -> np.ndarray:
    if not center:  # HiFi-GAN: reflect-pad (n_fft - hop) / 2 each side, then an uncentred STFT
        audio = np.pad(audio, (384, 384), mode="reflect")
    spec = librosa.stft(
        audio.astype(np.float64),
        n_fft=1024,
        hop_length=256,
        win_length=1024,
        window="hann",
        center=center,
        pad_mode="reflect",
    )
    return np.sqrt(np.abs(spec) ** 2 + eps)


def _filterbank(fmin: float, fmax: float | None) -> np.ndarray:
    return librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80, fmin=fmin, fmax=fmax, dtype=np.float64)


def librosa_mel(name: str, audio: np.ndarray) -> np.ndarray:
    """``name``'s TTS-side mel of ``audio``, per the toolkit's documented convention (see frontends.py)."""
    if name in ("nvidia", "speechbrain", "torchaudio"):  # ln(clamp(mel(|STFT|), 1e-5)), centred
        return np.log(np.maximum(_filterbank(0, 8000) @ _magnitude(audio), 1e-5))
    if name == "hifigan":
        return np.log(np.maximum(_filterbank(0, 8000) @ _magnitude(audio, center=False, eps=1e-9), 1e-5))
    if name == "espnet":  # magnitude sqrt(max(power, 1e-10)), 80-7600 Hz, log10(max(x, 1e-10))
        power = _magnitude(audio) ** 2
        return np.log10(np.maximum(_filterbank(80, 7600) @ np.sqrt(np.maximum(power, 1e-10)), 1e-10))
    if name == "coqui":  # BaseAudioConfig defaults: dB - ref 20, [-100, 0] dB -> [-4, 4], clipped
        db = 20 * np.log10(np.maximum(_filterbank(0, None) @ _magnitude(audio), 1e-8)) - 20
        return np.clip(8 * (db + 100) / 100 - 4, -4, 4)
    if name == "coqui-ln":  # LJSpeech recipes: signal_norm False, spec_gain 1, np.log
        return np.log(np.maximum(_filterbank(0, 8000) @ _magnitude(audio), 1e-8))
    raise AssertionError(name)


def expected_after_conversion(name: str, audio: np.ndarray) -> torch.Tensor:
    """waveflow's own mel of ``audio``; a front end that clips above 1e-5 (Coqui) clips it too."""
    own = own_mel(target_of(name), audio)
    return own.clamp(min=math.log(FRONTENDS[name].floor))


def test_the_table_records_each_convention():
    expected = {  # name: (log, floor under the log, band, centred, stats, scaling)
        "nvidia": ("ln", 1e-5, "0-8000 Hz", True, "unused", "log"),
        "hifigan": ("ln", 1e-5, "0-8000 Hz", False, "unused", "log"),
        "espnet": ("log10", 1e-10, "80-7600 Hz", True, "optional", "log"),
        "coqui": ("log10", 1e-8, "0-11025 Hz", True, "unused", "db"),
        "coqui-ln": ("ln", 1e-8, "0-8000 Hz", True, "unused", "log"),
        "speechbrain": ("ln", 1e-5, "0-8000 Hz", True, "unused", "log"),
        "torchaudio": ("ln", 1e-5, "0-8000 Hz", True, "unused", "log"),
    }
    assert set(FRONTEND_NAMES) == set(expected)
    for name, (log, floor, band, center, stats, scaling) in expected.items():
        fe = FRONTENDS[name]
        mel = fe.mel
        assert (mel.log, mel.log_floor, mel_guard.describe_band(mel), mel.center) == (
            log,
            floor,
            band,
            center,
        )
        assert (fe.stats, fe.compression) == (stats, scaling)
        assert (mel.sample_rate, mel.n_fft, mel.hop_length, mel.n_mels, mel.power) == (SR, 1024, 256, 80, 1.0)
    coqui = FRONTENDS["coqui"]
    assert (coqui.spec_gain, coqui.ref_level_db, coqui.min_level_db, coqui.max_norm) == (20, 20, -100, 4)
    assert coqui.signal_norm and coqui.symmetric and coqui.clip_norm
    assert coqui.floor == pytest.approx(1e-4)  # clipping at -100 dB re 20 dB: 10 ** (-80 / 20)


@pytest.mark.parametrize("name", FRONTEND_NAMES)
def test_librosa_mel_of_each_front_end_converts_to_waveflows_own(name):
    audio = utterance()
    tts = torch.from_numpy(librosa_mel(name, audio))
    converted = get_frontend(name).convert(tts, target_of(name))
    expected = expected_after_conversion(name, audio)
    assert converted.shape == expected.shape and converted.dtype == torch.float64
    torch.testing.assert_close(converted, expected, atol=ATOL, rtol=0)
    assert float(converted.min()) == pytest.approx(math.log(max(FRONTENDS[name].floor, 1e-5)))
    # The comparison has teeth: the unconverted mel is far off (another base, floor or scale).
    if name not in ("nvidia", "hifigan", "speechbrain", "torchaudio"):
        assert float((tts - expected).abs().max()) > 1.0


def test_coqui_conversion_is_exact_above_its_clipping_and_at_the_edge_below():
    audio = utterance()
    tts = torch.from_numpy(librosa_mel("coqui", audio))
    converted = get_frontend("coqui").convert(tts, target_of("coqui"))
    own = own_mel(target_of("coqui"), audio)
    clipped = tts <= -4.0
    assert 0 < int(clipped.sum()) < tts.numel()  # both regions are exercised
    torch.testing.assert_close(converted[~clipped], own[~clipped], atol=ATOL, rtol=0)
    assert torch.allclose(converted[clipped], torch.tensor(math.log(1e-4), dtype=torch.float64))
    # Values a TTS predicts just past the range are clipped, as Coqui's own denormalize does.
    outside = get_frontend("coqui").convert(torch.tensor([[4.3, -4.2]]), target_of("coqui"))
    torch.testing.assert_close(outside, torch.tensor([[math.log(10.0), math.log(1e-4)]]))


def _feats_stats_npz(path, frames: np.ndarray) -> None:
    """ESPnet's collect_stats output: count, sum and sum of squares per bin, over ``(frames, n_mels)``."""
    np.savez(path, count=np.array(frames.shape[0]), sum=frames.sum(0), sum_square=(frames**2).sum(0))


def test_espnet_feat_gen_normalised_with_feats_stats_npz(tmp_path):
    training = np.concatenate([librosa_mel("espnet", utterance(seed)).T for seed in (11, 12, 13)])
    _feats_stats_npz(tmp_path / "feats_stats.npz", training)
    mean, std = training.mean(0), training.std(0)
    audio = utterance()
    feat_gen = (librosa_mel("espnet", audio) - mean[:, None]) / std[:, None]  # what GlobalMVN emits
    adapter = MelAdapter("espnet", target_of("espnet"), stats=tmp_path / "feats_stats.npz")
    converted = adapter(torch.from_numpy(feat_gen))
    torch.testing.assert_close(converted, expected_after_conversion("espnet", audio), atol=ATOL, rtol=0)
    assert adapter.check(torch.from_numpy(feat_gen)) == []
    # Without the statistics the same input is named as normalised.
    (message,) = MelAdapter("espnet", target_of("espnet")).check(torch.from_numpy(feat_gen))
    assert "statistics" in message and "feats_stats.npz" in message


# -- the toolkits' own code, where it imports beside this torch ------------------------------------
def _real(module: str):
    """Import a toolkit module or skip, naming why (torchaudio's PyPI wheels need CUDA libraries and
    pin another torch; SpeechBrain and Coqui TTS import torchaudio)."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or OSError from a compiled extension built for another torch
        first = (str(exc).strip().splitlines() or [""])[-1][:160]
        pytest.skip(f"{module} does not import here: {type(exc).__name__}: {first}")


def test_espnet_log_mel_fbank_and_global_mvn(tmp_path):
    log_mel_fbank = _real("espnet2.tts.feats_extract.log_mel_fbank")
    global_mvn = _real("espnet2.layers.global_mvn")
    extract = log_mel_fbank.LogMelFbank(fs=SR, n_fft=1024, hop_length=256, n_mels=80, fmin=80, fmax=7600)
    audio = utterance()
    feats, _ = extract(torch.from_numpy(audio)[None])  # (1, frames, 80), time-major
    denorm = feats[0].T.double()
    converted = get_frontend("espnet").convert(denorm, target_of("espnet"))
    torch.testing.assert_close(converted, expected_after_conversion("espnet", audio), atol=ATOL, rtol=0)
    # ESPnet's own normalisation with a feats_stats.npz, undone with the same file.
    training = torch.cat([extract(torch.from_numpy(utterance(s))[None])[0][0] for s in (11, 12, 13)])
    _feats_stats_npz(tmp_path / "feats_stats.npz", training.double().numpy())
    normalize = global_mvn.GlobalMVN(tmp_path / "feats_stats.npz")
    feat_gen, _ = normalize(feats)
    adapter = MelAdapter("espnet", target_of("espnet"), stats=tmp_path / "feats_stats.npz")
    torch.testing.assert_close(
        adapter(feat_gen[0].T.double()), expected_after_conversion("espnet", audio), atol=ATOL, rtol=0
    )


def test_coqui_audio_processor_defaults_and_ljspeech_recipe():
    audio_module = _real("TTS.utils.audio")
    configs = _real("TTS.config.shared_configs")
    audio = utterance()
    defaults = configs.BaseAudioConfig(do_trim_silence=False)
    mel = audio_module.AudioProcessor(defaults).melspectrogram(audio.astype(np.float64))
    converted = get_frontend("coqui").convert(torch.from_numpy(mel).double(), target_of("coqui"))
    torch.testing.assert_close(converted, expected_after_conversion("coqui", audio), atol=ATOL, rtol=0)
    recipe = configs.BaseAudioConfig(
        do_trim_silence=False,
        signal_norm=False,
        mel_fmin=0.0,
        mel_fmax=8000,
        spec_gain=1.0,
        log_func="np.log",
    )
    mel = audio_module.AudioProcessor(recipe).melspectrogram(audio.astype(np.float64))
    converted = get_frontend("coqui-ln").convert(torch.from_numpy(mel).double(), target_of("coqui-ln"))
    torch.testing.assert_close(converted, expected_after_conversion("coqui-ln", audio), atol=ATOL, rtol=0)


def test_speechbrain_mel_spectrogram():
    hifigan = _real("speechbrain.lobes.models.HifiGAN")
    compute = getattr(hifigan, "mel_spectrogram", None) or hifigan.mel_spectogram
    audio = utterance()
    mel = compute(
        sample_rate=SR, hop_length=256, win_length=1024, n_fft=1024, n_mels=80, f_min=0.0, f_max=8000.0,
        power=1, normalized=False, norm="slaney", mel_scale="slaney", compression=True,
        audio=torch.from_numpy(audio),
    )  # fmt: skip
    converted = get_frontend("speechbrain").convert(mel.double(), target_of("speechbrain"))
    torch.testing.assert_close(converted, expected_after_conversion("speechbrain", audio), atol=ATOL, rtol=0)


def test_torchaudio_tacotron2_pipeline_mel():
    transforms = _real("torchaudio.transforms")
    audio = utterance()
    spec = transforms.MelSpectrogram(
        sample_rate=SR, n_fft=1024, win_length=1024, hop_length=256, f_min=0.0, f_max=8000.0,
        n_mels=80, mel_scale="slaney", norm="slaney", power=1,
    )(torch.from_numpy(audio))  # fmt: skip
    mel = torch.log(torch.clamp(spec, min=1e-5))  # examples/pipeline_tacotron2 SpectralNormalization
    converted = get_frontend("torchaudio").convert(mel.double(), target_of("torchaudio"))
    torch.testing.assert_close(converted, expected_after_conversion("torchaudio", audio), atol=ATOL, rtol=0)


# -- the Vocoder API ------------------------------------------------------------------------------------
SMALL_RATE = SMALL_MEL.sample_rate


def _espnet_like_small():
    """The espnet entry declared with the small vocoder's analysis (as a user with such a TTS would)."""
    analysis = {
        k: getattr(SMALL_MEL, k) for k in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels")
    }
    return FRONTENDS["espnet"].replace(**analysis, f_min=SMALL_MEL.f_min, f_max=SMALL_MEL.f_max)


@pytest.fixture(scope="module")
def small():
    model = small_model()
    plain = Vocoder.from_model(model, SMALL_MEL)
    audio = utterance(seed=5, seconds=1.2, sample_rate=SMALL_RATE)
    mel = plain.mel(audio, SMALL_RATE)  # ln, floor 1e-5: the vocoder's own convention
    mean = (mel / LN10).mean(dim=1) + 0.3  # statistics of a "training set" near this utterance's
    scale = (mel / LN10).std(dim=1) * 1.2
    feat_gen = ((mel / LN10) - mean[:, None]) / scale[:, None]  # ESPnet-style: log10, normalised
    return model, plain, audio, mel, feat_gen, (mean, scale)


def test_vocoder_converts_every_mel_it_receives(small):
    model, plain, audio, mel, feat_gen, stats = small
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching, declared front end and the right input: silent
        adapted = Vocoder.from_model(model, SMALL_MEL, mel_from=_espnet_like_small(), stats=stats)
        frames = mel.shape[1]
        z = 0.6 * torch.randn(1, 4, frames * 64 // 4, generator=torch.Generator().manual_seed(1))
        expected, _ = plain(mel, z=z)
        actual, _ = adapted(feat_gen, z=z)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    # Padded batches, streaming and the encode/decode round trip convert too.
    batch = torch.stack([feat_gen, torch.cat([feat_gen[:, :40], torch.zeros(16, frames - 40)], 1)])
    plain_batch = torch.stack([mel, torch.cat([mel[:, :40], torch.zeros(16, frames - 40)], 1)])
    lengths = torch.tensor([frames, 40])
    actual, _ = adapted(batch, lengths, generator=torch.Generator().manual_seed(3))
    expected, _ = plain(plain_batch, lengths, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert adapted.decode_batch(batch, lengths).shape == (2, 1, frames * 64)
    chunks = [feat_gen[:, i : i + 30] for i in range(0, frames, 30)]
    plain_chunks = [mel[:, i : i + 30] for i in range(0, frames, 30)]
    streamed = torch.cat(list(adapted.stream(chunks, generator=torch.Generator().manual_seed(2))))
    expected = torch.cat(list(plain.stream(plain_chunks, generator=torch.Generator().manual_seed(2))))
    torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=0)
    clip = torch.from_numpy(audio[: (frames - 4) * 64])
    torch.testing.assert_close(adapted.encode(clip, feat_gen), plain.encode(clip, mel), atol=1e-5, rtol=0)
    torch.testing.assert_close(adapted.decode(z[0], feat_gen), plain.decode(z[0], mel), atol=1e-5, rtol=0)
    # Without the conversion the same input gives other audio: the test can tell.
    with pytest.warns(mel_guard.MelConventionWarning, match="mean/variance-normalised"):
        unconverted, _ = plain(feat_gen, z=z)
    assert float((unconverted - expected).abs().max()) > 1e-2
    # set_frontend(None) goes back to no conversion; the default is none.
    assert Vocoder.from_model(model, SMALL_MEL).mel_adapter is None
    adapted.set_frontend(None)
    torch.testing.assert_close(adapted(mel, z=z)[0], plain(mel, z=z)[0], atol=1e-6, rtol=0)


def test_a_front_end_of_another_rate_or_band_warns_once(small):
    model = small[0]
    with pytest.warns(FrontendMismatchWarning) as record:
        vocoder = Vocoder.from_model(model, SMALL_MEL, mel_from="nvidia")
    assert len(record) == 1
    message = str(record[0].message)
    assert "22050 Hz with hop 256" in message and f"{SMALL_RATE} Hz with hop 64" in message
    assert "wrong speed and pitch" in message and "0-8000 Hz" in message and "0-4000 Hz" in message
    assert vocoder.mel_adapter is not None  # it converts all the same
    # The band alone (same rate and STFT) is named too.
    target = FRONTENDS["espnet"].mel.replace(log="ln", log_floor=1e-5, f_min=0.0, f_max=8000.0)
    (band,) = FRONTENDS["espnet"].mismatches(target)
    assert "80-7600 Hz" in band and "0-8000 Hz" in band
    assert FRONTENDS["nvidia"].mismatches(target_of("nvidia")) == []
    # A higher floor and another centring are caveats, not warnings.
    assert "-9.21" in FRONTENDS["coqui"].caveats(target_of("coqui"))[0]
    assert "half a hop" in FRONTENDS["hifigan"].caveats(MelConfig())[0]


def test_wrong_statistics_and_names_are_refused(small, tmp_path):
    model = small[0]
    frontend = _espnet_like_small()
    with pytest.raises(ValueError, match="not mean/variance normalised"):
        Vocoder.from_model(model, SMALL_MEL, mel_from=frontend.replace(stats="unused"), stats=small[5])
    with pytest.raises(ValueError, match="80 values but the vocoder has n_mels=16"):
        Vocoder.from_model(model, SMALL_MEL, mel_from=frontend, stats=(np.zeros(80), np.ones(80)))
    with pytest.raises(ValueError, match="scale must be positive"):
        Vocoder.from_model(model, SMALL_MEL, mel_from=frontend, stats=(np.zeros(16), np.zeros(16)))
    with pytest.raises(ValueError, match="give mel_from too"):
        Vocoder.from_model(model, SMALL_MEL, stats=small[5])
    with pytest.raises(ValueError, match="known: nvidia, hifigan, espnet"):
        Vocoder.from_model(model, SMALL_MEL, mel_from="tacotron")
    with pytest.raises(FileNotFoundError, match="statistics file not found"):
        Vocoder.from_model(model, SMALL_MEL, mel_from=frontend, stats=tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="unknown front-end setting"):
        FRONTENDS["espnet"].replace(sampling_rate=16000)


def test_a_mel_of_another_convention_is_named(small):
    model, _, _, mel, feat_gen, stats = small
    espnet = Vocoder.from_model(model, SMALL_MEL, mel_from=_espnet_like_small())
    long_mel = mel.repeat(1, 3)  # enough frames for the range heuristics
    with pytest.warns(mel_guard.MelConventionWarning, match="give the statistics"):
        espnet(feat_gen.repeat(1, 3))
    with pytest.warns(mel_guard.MelConventionWarning, match="natural log"):
        espnet(long_mel)  # an NVIDIA-style ln mel handed to the log10 front end
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        espnet(long_mel / LN10)  # the de-normalised log10 mel (feat_gen_denorm): right
    coqui_like = FRONTENDS["coqui"].replace(
        **{k: getattr(SMALL_MEL, k) for k in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels")},
        f_max=None,
    )
    coqui = Vocoder.from_model(model, SMALL_MEL, mel_from=coqui_like)
    with pytest.warns(mel_guard.MelConventionWarning, match=r"outside \[-4, 4\]"):
        coqui(long_mel)
    coqui_values = (8 * (20 * long_mel / LN10 - 20 + 100) / 100 - 4).clamp(-4, 4)  # Coqui's own scaling
    assert coqui.mel_warnings(coqui_values) == []  # the raised floor (ln 1e-4) is no complaint either
    assert coqui.mel_warnings(coqui_values * 1.1) == []  # nor a TTS prediction overshooting [-4, 4]
    assert "statistics were given" in MelAdapter(_espnet_like_small(), SMALL_MEL, stats).check(long_mel)[0]


# -- statistics files --------------------------------------------------------------------------------------
def _kaldi_stats(frames: np.ndarray) -> np.ndarray:
    """Kaldi's global CMVN accumulators of ``(frames, dim)``: ``2 x (dim + 1)``."""
    stats = np.zeros((2, frames.shape[1] + 1))
    stats[0, :-1], stats[0, -1] = frames.sum(0), frames.shape[0]
    stats[1, :-1] = (frames**2).sum(0)
    return stats


def _kaldi_binary(matrix: np.ndarray, token: bytes, key: bytes = b"") -> bytes:
    dtype = "<f4" if token == b"FM " else "<f8"
    header = (
        b"\0B"
        + token
        + b"\x04"
        + struct.pack("<i", matrix.shape[0])
        + b"\x04"
        + struct.pack("<i", matrix.shape[1])
    )
    return key + header + matrix.astype(dtype).tobytes()


def test_kaldi_cmvn_statistics(tmp_path):
    frames = np.random.default_rng(0).normal(-4.0, 1.5, size=(500, 6))
    stats = _kaldi_stats(frames)
    text = (
        "global  [\n  "
        + " ".join(repr(float(v)) for v in stats[0])
        + "\n  "
        + " ".join(repr(float(v)) for v in stats[1])
        + " ]\n"
    )
    (tmp_path / "text.ark").write_text(text)
    (tmp_path / "plain.mat").write_bytes(_kaldi_binary(stats, b"DM "))
    (tmp_path / "keyed.ark").write_bytes(_kaldi_binary(stats, b"FM ", key=b"global "))
    for name, tol in (("text.ark", 1e-12), ("plain.mat", 1e-12), ("keyed.ark", 1e-4)):
        mean, scale = mel_guard.load_mvn_stats(tmp_path / name)
        np.testing.assert_allclose(mean, frames.mean(0), rtol=tol, atol=tol)
        np.testing.assert_allclose(scale, frames.std(0), rtol=tol * 10, atol=tol * 10)
    (tmp_path / "compressed.ark").write_bytes(b"global \0BCM " + b"\0" * 40)
    (tmp_path / "short.ark").write_bytes(_kaldi_binary(stats, b"DM ")[:-8])
    (tmp_path / "shape.ark").write_bytes(_kaldi_binary(stats[:1], b"DM "))
    (tmp_path / "words.ark").write_text("global [ 1 2 three\n 4 5 6 ]")
    for name, match in (
        ("compressed.ark", "'CM' is not supported"),
        ("short.ark", "the file is shorter"),
        ("shape.ark", r"must be 2 x \(n_mels \+ 1\)"),
        ("words.ark", "other than numbers"),
    ):
        with pytest.raises(ValueError, match=match):
            mel_guard.load_mvn_stats(tmp_path / name)


def test_kaldi_statistics_written_by_kaldiio(tmp_path):
    kaldiio = _real("kaldiio")
    frames = np.random.default_rng(1).normal(2.0, 0.5, size=(300, 5))
    stats = _kaldi_stats(frames)
    kaldiio.save_mat(str(tmp_path / "binary.mat"), stats)
    kaldiio.save_ark(str(tmp_path / "cmvn.ark"), {"global": stats}, text=True)
    for name in ("binary.mat", "cmvn.ark"):
        mean, scale = mel_guard.load_mvn_stats(tmp_path / name)
        np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-6)
        np.testing.assert_allclose(scale, frames.std(0), rtol=1e-5)
