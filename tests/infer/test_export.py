"""Export: the scriptable inference graph equals the eager model; TorchScript and ONNX files
match eager synthesis within 1e-4 on other shapes than the one traced; metadata travels along."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import (  # noqa: F401  (one_torch_thread is an autouse fixture)
    SMALL_MEL,
    SMALL_MODEL,
    one_torch_thread,
    seeded,
    small_model,
)
from waveflow.infer.export import WaveGlowInference, export_onnx, export_torchscript, folded_copy
from waveflow.infer.vocoder import Vocoder
from waveflow.presets import glow, nice, realnvp

SHAPE = {
    "n_mels": 16,
    "hop_length": 64,
    "upsample_kernel_size": 256,
    "n_flows": 4,
    "n_group": 4,
    "n_early_every": 2,
}
VARIANTS = {
    "waveglow": SMALL_MODEL,
    "glow-clamped": glow().replace(**SHAPE, wavenet=SMALL_MODEL.wavenet, log_scale_clamp=2.0),
    "realnvp": realnvp().replace(**SHAPE, wavenet=SMALL_MODEL.wavenet),
    "nice": nice().replace(**SHAPE, wavenet=SMALL_MODEL.wavenet),
    "no-early-outputs": SMALL_MODEL.replace(n_early_size=0),
}


def inputs(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = seeded(seed)
    mel = -5.0 + 2.0 * torch.randn(batch, 16, frames, generator=generator)
    z = 0.6 * torch.randn(batch, 4, frames * 16, generator=generator)
    return mel, z


@pytest.fixture(scope="module")
def vocoder() -> Vocoder:
    vocoder = Vocoder.from_model(small_model(), SMALL_MEL)
    vocoder.check_mel = False  # random mels
    return vocoder


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_inference_graph_equals_decode(name):
    model = small_model(VARIANTS[name])
    mel, z = inputs(2, 9)
    with torch.no_grad():
        expected = model.decode(z, mel)
        actual = WaveGlowInference(model)(mel, z)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_one_by_one_inverses_are_precomputed():
    model = small_model()
    graph = WaveGlowInference(model)
    for exported, step in zip(graph.steps, reversed(model.flow.steps)):
        expected = torch.linalg.inv(step.mix.weight.double()).float()
        torch.testing.assert_close(exported.mix_inverse, expected, atol=1e-6, rtol=0)
        assert torch.equal(exported.shift, torch.zeros_like(exported.shift))


def test_folded_copy_leaves_the_original_untouched():
    """Folding a deep copy would strip the original's weight norm (shared parametrized class)."""
    model = small_model()
    mel, z = inputs(1, 5)
    with torch.no_grad():
        before = model.decode(z, mel)
        copy = folded_copy(model)
        WaveGlowInference(model)
        after = model.decode(z, mel)
        torch.testing.assert_close(copy.decode(z, mel), before, atol=1e-5, rtol=0)
    assert torch.equal(before, after)
    assert any("parametrizations" in k for k in model.state_dict())
    assert not any("parametrizations" in k for k in copy.state_dict())


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:DeprecationWarning")
def test_torchscript_matches_eager(tmp_path, vocoder):
    path = export_torchscript(vocoder, tmp_path / "vocoder.ts")
    extra = {"waveflow.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["waveflow.json"])
    assert meta["vocoder"]["mel"]["sample_rate"] == 8000 and meta["hop_length"] == 64 and meta["n_group"] == 4
    for batch, frames in ((1, 7), (3, 23)):
        mel, z = inputs(batch, frames, seed=frames)
        expected, _ = vocoder(mel, z=z)
        with torch.no_grad():
            actual = scripted(mel, z)
        assert actual.shape == (batch, frames * 64)
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_onnx_matches_eager(tmp_path, vocoder):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = export_onnx(vocoder, tmp_path / "vocoder.onnx", opset=17)
    proto = onnx.load(str(path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["waveflow"])
    assert meta["n_mels"] == 16 and meta["vocoder"]["model"]["n_flows"] == 4
    assert [i.name for i in proto.graph.input] == ["mel", "z"] and proto.graph.output[0].name == "audio"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, frames in ((1, 8), (2, 31)):  # traced on (1, 8): the second call uses the dynamic axes
        mel, z = inputs(batch, frames, seed=frames)
        expected, _ = vocoder(mel, z=z)
        (actual,) = session.run(None, {"mel": mel.numpy(), "z": z.numpy()})
        assert actual.shape == (batch, frames * 64)
        torch.testing.assert_close(torch.from_numpy(actual), expected, atol=1e-4, rtol=0)


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:DeprecationWarning")
def test_export_of_a_bare_model_and_refusals(tmp_path):
    model = small_model()
    path = export_torchscript(model, tmp_path / "model.ts")
    extra = {"waveflow.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["waveflow.json"])["model"] == model.config.to_dict()
    mel, z = inputs(2, 6, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(scripted(mel, z), model.decode(z, mel), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="expected a Vocoder or a WaveGlow"):
        export_torchscript(torch.nn.Linear(2, 2), tmp_path / "x.ts")
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        export_torchscript(model, tmp_path / "missing" / "x.ts")
