"""Typed configs: strict keys, validation messages with numbers, round trips."""

from __future__ import annotations

import pytest

from waveflow.config import (
    ExperimentConfig,
    MelConfig,
    ModelConfig,
    TrainConfig,
    VocoderConfig,
    WaveNetConfig,
)
from waveflow.presets import espnet_mel, glow, hifigan_mel, nice, realnvp, tacotron2_mel, waveglow_ljspeech


def test_unknown_keys_are_named_by_their_dotted_path():
    with pytest.raises(
        ValueError, match=r"unknown config key 'n_flow'; valid keys at the top level of ModelConfig: "
    ):
        ModelConfig.from_dict({"n_flow": 12})
    with pytest.raises(
        ValueError, match=r"unknown config key 'wavenet.channels'; valid keys in 'wavenet': dilation"
    ):
        ModelConfig.from_dict({"wavenet": {"channels": 3}})
    with pytest.raises(
        ValueError,
        match=r"unknown config keys 'model.wavenet.a', 'model.wavenet.b'; valid keys in 'model.wavenet'",
    ):
        ExperimentConfig.from_dict({"model": {"wavenet": {"b": 1, "a": 2}}})


def test_round_trip_through_plain_dicts():
    for cfg in (waveglow_ljspeech(), nice(), realnvp(), glow()):
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    for mel in (tacotron2_mel(), hifigan_mel(), espnet_mel()):
        assert MelConfig.from_dict(mel.to_dict()) == mel
    exp = ExperimentConfig()
    assert ExperimentConfig.from_dict(exp.to_dict()) == exp


def test_string_values_from_the_command_line_are_coerced():
    cfg = ModelConfig.from_dict({"n_flows": "6", "weight_norm": "false", "log_scale_clamp": "2.5"})
    assert cfg.n_flows == 6 and cfg.weight_norm is False and cfg.log_scale_clamp == 2.5
    with pytest.raises(ValueError, match="expected an integer"):
        ModelConfig.from_dict({"n_flows": "six"})
    with pytest.raises(ValueError, match="not one of"):
        ModelConfig.from_dict({"coupling": "spline"})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_group": 7}, "n_group must be even"),
        ({"n_early_size": 3}, "n_early_size must be even"),
        ({"n_group": 4, "n_early_every": 2}, r"leave -6 channel\(s\).*at least 2 are needed"),
        ({"hop_length": 100}, r"hop_length \(100\) must be divisible by n_group \(8\)"),
        ({"upsample_kernel_size": 128}, r"upsample_kernel_size \(128\) must be >= hop_length \(256\)"),
        ({"wavenet": WaveNetConfig(kernel_size=4)}, "kernel_size must be odd"),
    ],
)
def test_model_validation_messages(changes, message):
    with pytest.raises(ValueError, match=message):
        waveglow_ljspeech().replace(**changes)


def test_mel_validation_and_vocoder_consistency():
    with pytest.raises(ValueError, match="f_max"):
        MelConfig(f_max=12000.0).validate()
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(win_length=2048).validate()
    with pytest.raises(ValueError, match=r"model.n_mels \(80\) differs from mel.n_mels \(100\)"):
        VocoderConfig(mel=MelConfig(n_mels=100)).validate()


def test_experiment_segment_must_be_divisible_by_group():
    with pytest.raises(ValueError, match=r"segment_length \(16001\)"):
        ExperimentConfig.from_dict({"data": {"segment_length": 16001}})


@pytest.mark.parametrize("cls", [VocoderConfig, ExperimentConfig])
def test_the_mel_gives_the_model_its_bands_and_hop(cls):
    mel = {"n_mels": 100, "hop_length": 200, "n_fft": 800, "win_length": 800}
    config = cls.from_dict({"mel": mel, "model": {"n_group": 8, "upsample_kernel_size": 800}})
    assert (config.model.n_mels, config.model.hop_length) == (100, 200)
    assert cls.from_dict(config.to_dict()) == config  # the stored form repeats them, and that is accepted
    assert cls.from_dict({"mel": {"n_mels": 64}}).model.n_mels == 64  # no model section at all
    with pytest.raises(ValueError, match=r"model.n_mels \(80\) differs from mel.n_mels \(100\)"):
        cls.from_dict({"mel": mel, "model": {"n_mels": 80}})
    with pytest.raises(ValueError, match=r"model.hop_length \(256\) differs from mel.hop_length \(200\)"):
        cls.from_dict({"mel": mel, "model": {"hop_length": 256, "upsample_kernel_size": 800}})
    # A ModelConfig object is taken as it is (and checked against the mel).
    with pytest.raises(ValueError, match=r"model.n_mels \(80\) differs from mel.n_mels \(100\)"):
        cls.from_dict({"mel": mel, "model": ModelConfig()})
    assert ModelConfig().n_mels == 80 and ModelConfig().hop_length == 256  # alone: its own defaults


def test_cosine_floor_above_the_learning_rate_is_refused_by_validate():
    with pytest.raises(ValueError, match=r"train.min_learning_rate=0.01 exceeds train.learning_rate=0.001"):
        TrainConfig(learning_rate=1e-3, lr_schedule="cosine", min_learning_rate=1e-2).validate()
    TrainConfig(learning_rate=1e-3, lr_schedule="constant", min_learning_rate=1e-2).validate()  # unused floor
