"""YAML configs with dotted overrides: values, unknown keys named by their path, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from waveflow.config import ExperimentConfig
from waveflow.train.yaml_config import apply_overrides, config_to_yaml, load_config, write_config


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_overrides_set_nested_values_of_every_type(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"train": {"max_steps": 5}, "model": {"wavenet": {"n_layers": 4}}})
    config = load_config(
        path,
        [
            "train.max_steps=7",
            "train.learning_rate=3e-4",  # YAML 1.1 reads this as text; the config converts it
            "train.adam_betas=[0.8, 0.95]",
            "train.grad_clip_norm=null",
            "model.wavenet.n_channels=32",
            "mel.f_max=null",
            "data.dequantize=false",
            "train.device=cuda:1",
        ],
    )
    assert config.train.max_steps == 7
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.train.adam_betas == (0.8, 0.95)
    assert config.train.grad_clip_norm is None
    assert config.model.wavenet.n_layers == 4  # from the file, untouched by the override of a sibling
    assert config.model.wavenet.n_channels == 32
    assert config.mel.f_max is None
    assert config.data.dequantize is False
    assert config.train.device == "cuda:1"


def test_text_fields_are_taken_verbatim():
    out = apply_overrides({}, ["data.training_files=lists/123.txt", "data.validation_files=null"])
    assert out["data"] == {"training_files": "lists/123.txt", "validation_files": "null"}


@pytest.mark.parametrize(
    ("data", "override", "dotted"),
    [
        ({"train": {"max_stepz": 3}}, None, "train.max_stepz"),
        ({"model": {"wavenet": {"n_layerz": 3}}}, None, "model.wavenet.n_layerz"),
        ({"trian": {}}, None, "trian"),
        ({}, "model.wavenet.n_layerz=3", "model.wavenet.n_layerz"),
        ({}, "train.max_steps.x=3", "train.max_steps"),
        ({}, "optim.lr=3", "optim"),
        ({}, "model={n_flowz: 3}", "model.n_flowz"),
    ],
)
def test_unknown_keys_are_named_by_their_dotted_path(tmp_path, data, override, dotted):
    path = write_yaml(tmp_path / "c.yaml", data)
    with pytest.raises(ValueError, match=rf"'{dotted}'"):
        load_config(path, [override] if override else [])


def test_unknown_keys_name_the_valid_keys_at_their_level(tmp_path):
    valid = "dilation_cycle, kernel_size, n_channels, n_layers, separable"
    message = rf"unknown config key 'model.wavenet.n_layerz'; valid keys in 'model.wavenet': {valid}$"
    with pytest.raises(ValueError, match=message):
        load_config(write_yaml(tmp_path / "c.yaml", {"model": {"wavenet": {"n_layerz": 3}}}))
    with pytest.raises(ValueError, match=message):
        load_config(None, ["model.wavenet.n_layerz=3"])
    with pytest.raises(
        ValueError, match=r"unknown config key 'optim'; valid keys at the top level of ExperimentConfig"
    ):
        load_config(None, ["optim.lr=3"])


def test_the_mel_section_gives_the_model_its_bands_and_hop(tmp_path):
    mel = {"n_mels": 100, "hop_length": 200, "n_fft": 800, "win_length": 800}
    path = write_yaml(tmp_path / "c.yaml", {"mel": mel, "model": {"upsample_kernel_size": 800}})
    config = load_config(path)
    assert (config.model.n_mels, config.model.hop_length) == (100, 200)
    assert load_config(write_config(config, tmp_path / "written.yaml")) == config  # written out in full
    assert load_config(None, ["mel.n_mels=64"]).model.n_mels == 64
    with pytest.raises(ValueError, match=r"model.n_mels \(80\) differs from mel.n_mels \(100\)"):
        load_config(path, ["model.n_mels=80"])


def test_malformed_override_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(None, ["train.max_steps"])
    with pytest.raises(ValueError, match=r"train.adam_betas=\[0.9,: the value is not valid YAML"):
        load_config(None, ["train.adam_betas=[0.9,"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ValueError, match="mapping"):
        load_config(write_yaml(tmp_path / "list.yaml", [1, 2]))


def test_validation_errors_carry_the_numbers():
    with pytest.raises(ValueError, match=r"segment_length \(1023\).*n_group \(8\)"):
        load_config(None, ["data.segment_length=1023"])
    with pytest.raises(ValueError, match="batch_size"):
        load_config(None, ["train.batch_size=0"])
    with pytest.raises(ValueError, match=r"train.min_learning_rate=0.01 exceeds train.learning_rate=0.001"):
        load_config(
            None, ["train.lr_schedule=cosine", "train.learning_rate=1e-3", "train.min_learning_rate=1e-2"]
        )


def test_relative_file_lists_become_absolute_against_base(tmp_path):
    config = load_config(None, ["data.training_files=lists/train.txt"], base=tmp_path)
    assert Path(config.data.training_files) == tmp_path / "lists" / "train.txt"
    assert config.data.validation_files == ""  # empty stays empty (no validation)


def test_written_config_reads_back_equal(tmp_path):
    config = load_config(None, ["train.max_steps=3", "model.n_flows=6", "train.adam_betas=[0.5,0.6]"])
    path = write_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config
    assert ExperimentConfig.from_dict(yaml.safe_load(config_to_yaml(config))) == config
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left behind
