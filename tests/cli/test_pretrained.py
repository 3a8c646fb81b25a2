"""The model shipped inside the package: registry, integrity, names on the command line, and
what it does to real speech it never heard (the shipped public-domain clip)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from waveflow import Vocoder, cli, pretrained
from waveflow.eval import metrics

# Measured on the shipped clip when the model was packaged (see its model card): the test holds
# the model to within a margin of that, so a broken file, front end or inverse shows up here.
MIN_STOI = 0.89  # compact-speech-v2 at 150 CPU-minutes: 0.906 over seeds 0-2 (at 59.5: 0.880; v1: 0.870)


def test_registry_lists_the_default_and_its_file_is_intact(capsys):
    model = pretrained.get("default")
    assert model.name in pretrained.REGISTRY and "default" in pretrained.names()
    path = pretrained.resolve("default")  # checks the recorded sha256
    assert path.is_file() and path.stat().st_size < 25e6
    assert (pretrained.HERE / model.card).is_file() and pretrained.SAMPLE_CLIP.is_file()
    assert cli.main(["pretrained"]) == 0
    out = capsys.readouterr().out
    assert model.name in out and "alias: default" in out and "licence" in out
    assert str(pretrained.HERE / model.card) in out
    assert cli.main(["pretrained", "--sample"]) == 0
    assert capsys.readouterr().out.strip() == str(pretrained.SAMPLE_CLIP)


def test_a_corrupt_install_and_an_unknown_name_are_refused(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="no pretrained model called 'nope'; registered: .*default"):
        pretrained.get("nope")
    entry = pretrained.get("default")
    fake = tmp_path / "broken.pt"
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    monkeypatch.setitem(
        pretrained.REGISTRY, entry.name, type(entry)(**{**entry.__dict__, "file": "broken.pt"})
    )
    with pytest.raises(ValueError, match="does not match its recorded sha256"):
        pretrained.resolve("default")


def test_default_model_vocodes_an_unseen_voice():
    vocoder = Vocoder.from_pretrained()
    audio, rate = sf.read(pretrained.SAMPLE_CLIP, dtype="float32")
    assert rate == vocoder.sample_rate == 22050
    out, _ = vocoder(vocoder.mel(audio, rate), generator=torch.Generator().manual_seed(0))
    reference, estimate = metrics.align(audio, out[0].numpy())
    assert np.isfinite(estimate).all() and np.abs(estimate).max() < 1.0
    assert metrics.stoi(reference, estimate, rate) >= MIN_STOI


def test_commands_take_a_registered_name(tmp_path, capsys):
    out = tmp_path / "speech.wav"
    assert cli.main(["resynthesize", "default", str(pretrained.SAMPLE_CLIP), str(out)]) == 0
    written, rate = sf.read(out)
    assert rate == 22050 and abs(written.shape[0] - sf.info(pretrained.SAMPLE_CLIP).frames) == 0
    assert cli.main(["inspect", "default"]) == 0
    shown = capsys.readouterr().out
    assert "n_group 256" in shown and "frame conditioning, sine source (direct)" in shown
    assert cli.main(["inspect", "no-such-model"]) == 2
    assert "not a registered name" in capsys.readouterr().err
