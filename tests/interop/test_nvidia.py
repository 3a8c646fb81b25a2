"""NVIDIA checkpoint import: parity with the outputs of NVIDIA's own code, both checkpoint formats.

Reference arrays and tolerances: ``shared/fixtures/nvidia_waveglow/README.md``. The imported
models and their outputs are computed once per session (the original checkpoint is 35 MB).
"""

from __future__ import annotations

import functools
import io
import lzma
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import perturbed_model, randomize_, torch_bytes
from waveflow import losses, presets, safe_load
from waveflow.interop import nvidia
from waveflow.model import WaveGlow

pytestmark = pytest.mark.fixtures

CHECKPOINTS = {
    "original": "waveglow_orig_checkpoint.pt.xz",
    "dle": "waveglow_dle_hub_checkpoint.pt.xz",
}
FORMAT_NAMES = {"original": "nvidia-original", "dle": "nvidia-dle"}


# -- cached loading ------------------------------------------------------------------------------
@functools.cache
def _arrays(folder: Path, name: str) -> dict[str, torch.Tensor]:
    with np.load(folder / name) as npz:
        return {k: torch.from_numpy(npz[k]) for k in npz.files}


@functools.cache
def _import(folder: Path, fmt: str) -> nvidia.NvidiaImport:
    return nvidia.import_nvidia(folder / CHECKPOINTS[fmt])


def _model(folder: Path, fmt: str, fold: bool = False) -> WaveGlow:
    imported = _import(folder, fmt)
    model = WaveGlow(imported.config)
    model.load_state_dict(imported.state_dict, strict=True)
    if fold:
        model.remove_weight_norm()
    return model.eval()


def _forward_with_log_s(model: WaveGlow, audio: torch.Tensor, mel: torch.Tensor):
    """``z``, ``logdet`` and every flow's ``log_s`` (the second half of the coupling network's output)."""
    log_s: dict[int, torch.Tensor] = {}
    handles = []
    for k, step in enumerate(model.flow.steps):
        n_b = step.coupling.n_b

        def hook(module, args, out, k=k, n_b=n_b):
            log_s[k] = out[:, n_b:].detach().clone()

        handles.append(step.coupling.conditioner.register_forward_hook(hook))
    try:
        with torch.no_grad():
            z, logdet = model(audio, mel)
    finally:
        for h in handles:
            h.remove()
    return z, logdet, [log_s[k] for k in range(len(model.flow.steps))]


def _log_det_w(model: WaveGlow, batch: int, num_groups: int) -> torch.Tensor:
    # NVIDIA's per-flow log_det_W is batch * groups * logdet(W).
    with torch.no_grad():
        return torch.stack([step.mix.log_abs_det().float() * batch * num_groups for step in model.flow.steps])


@functools.cache
def _outputs(folder: Path, fmt: str, fold: bool = False) -> dict[str, torch.Tensor]:
    io_ = _arrays(folder, "waveglow_io.npz")
    model = _model(folder, fmt, fold)
    out: dict[str, torch.Tensor] = {}
    z, logdet, log_s = _forward_with_log_s(model, io_["audio"], io_["mel"])
    out["z"], out["loss"] = z, losses.nvidia_loss(z, logdet).mean()
    for k, s in enumerate(log_s):
        out[f"log_s_{k:02d}"] = s
    out["log_s_sum"] = torch.stack([s.sum() for s in log_s])
    out["log_det_W"] = _log_det_w(model, 1, z.shape[2])
    with torch.no_grad():
        out["cond_input_first16"] = model.condition(io_["mel"], io_["audio"].shape[1])[:, :, :16]
        out["z_25frames"] = model(io_["audio"], io_["mel_25frames"])[0]
    out["infer_sigma0"] = model.infer(io_["mel"], sigma=0.0)
    torch.manual_seed(1234)
    out["infer_sigma0p6_seed1234"] = model.infer(io_["mel"], sigma=0.6)
    z2, logdet2, log_s2 = _forward_with_log_s(model, io_["b2_audio"], io_["b2_mel"])
    out["b2_z"], out["b2_loss"] = z2, losses.nvidia_loss(z2, logdet2).mean()
    out["b2_log_s_sum"] = torch.stack([s.sum() for s in log_s2])
    out["b2_log_det_W"] = _log_det_w(model, 2, z2.shape[2])
    out["b2_infer_sigma0"] = model.infer(io_["b2_mel"], sigma=0.0)
    return out


@pytest.fixture
def folder(nvidia_fixtures: Path) -> Path:
    return nvidia_fixtures


def _close(
    actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, name: str = ""
) -> None:
    actual = actual.reshape(expected.shape).to(expected.dtype)
    diff = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (
        f"{name}: max |diff| {diff:.3g} (atol {atol})"
    )


# -- parameter counts (no fixtures needed) -------------------------------------------------------
@pytest.mark.parametrize("fold, expected", [(False, 87_879_272), (True, 87_731_816)])
def test_ljspeech_parameter_count_matches_nvidia(fold, expected):
    model = WaveGlow(presets.waveglow_ljspeech())
    if fold:
        model.remove_weight_norm()
    assert sum(p.numel() for p in model.parameters()) == expected


# -- import --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_import_reads_config_from_the_file(folder, fmt):
    imported = _import(folder, fmt)
    assert imported.format == FORMAT_NAMES[fmt]
    assert not imported.weight_norm_folded
    cfg = imported.config
    assert (cfg.n_mels, cfg.hop_length, cfg.upsample_kernel_size) == (80, 256, 1024)
    assert (cfg.n_flows, cfg.n_group, cfg.n_early_every, cfg.n_early_size) == (12, 8, 4, 2)
    assert (cfg.wavenet.n_layers, cfg.wavenet.n_channels, cfg.wavenet.kernel_size) == (2, 32, 3)
    assert cfg.weight_norm and not cfg.alternate_halves
    assert all(v.dtype == torch.float32 for v in imported.state_dict.values())
    # README: 7,734,248 parameters as registered (g and v).
    assert sum(v.numel() for v in imported.state_dict.values()) == 7_734_248
    expected_info = {"iteration": 2000, "learning_rate": 1e-4} if fmt == "original" else {"epoch": 1000}
    assert imported.info == expected_info


def test_both_formats_give_identical_weights(folder):
    a, b = _import(folder, "original").state_dict, _import(folder, "dle").state_dict
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_stale_weight_attribute_is_ignored(folder):
    """The pickled convs carry a stale ``weight``; the import must rebuild it from g and v."""
    source = safe_load.CheckpointSource.from_any(folder / CHECKPOINTS["original"])
    model = safe_load.load_restricted(source)["model"]
    cond = model._modules["WN"]._modules["0"]._modules["cond_layer"]
    g, v = cond._parameters["weight_g"], cond._parameters["weight_v"]
    rebuilt = g * v / v.norm(dim=(1, 2), keepdim=True)
    assert (cond.__dict__["weight"] - rebuilt).abs().max() > 0.05  # the trap exists in the fixture
    imported = _model(folder, "original", fold=True).state_dict()
    _close(imported["flow.steps.0.coupling.conditioner.cond_layer.weight"], rebuilt, 1e-6, name="cond_layer")


# -- parity with NVIDIA/waveglow (waveglow_io.npz) -----------------------------------------------
@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_forward_matches_nvidia(folder, fmt):
    ref, out = _arrays(folder, "waveglow_io.npz"), _outputs(folder, fmt)
    _close(out["z"], ref["z"], 1e-5, name="z")
    for k in range(12):
        _close(out[f"log_s_{k:02d}"], ref[f"log_s_{k:02d}"], 1e-6, name=f"log_s_{k:02d}")
    _close(out["log_s_sum"], ref["log_s_sum"], 1e-3, 1e-5, name="log_s_sum")
    _close(out["log_det_W"], ref["log_det_W"], 1e-3, 1e-5, name="log_det_W")
    _close(out["loss"], ref["loss"], 1e-6, name="loss")
    _close(out["cond_input_first16"], ref["cond_input_first16"], 1e-5, name="cond_input_first16")


@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_25_frame_mel_gives_the_same_z(folder, fmt):
    out = _outputs(folder, fmt)
    assert torch.equal(out["z_25frames"], out["z"])


@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_infer_matches_nvidia(folder, fmt):
    ref, out = _arrays(folder, "waveglow_io.npz"), _outputs(folder, fmt)
    _close(out["infer_sigma0"], ref["infer_sigma0"], 1e-5, name="infer_sigma0")
    _close(out["infer_sigma0p6_seed1234"], ref["infer_sigma0p6_seed1234"], 1e-5, name="infer_sigma0p6")


@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_batch_of_two_matches_nvidia(folder, fmt):
    ref, out = _arrays(folder, "waveglow_io.npz"), _outputs(folder, fmt)
    _close(out["b2_z"], ref["b2_z"], 1e-5, name="b2_z")
    _close(out["b2_loss"], ref["b2_loss"], 1e-6, name="b2_loss")
    _close(out["b2_log_s_sum"], ref["b2_log_s_sum"], 1e-3, 1e-5, name="b2_log_s_sum")
    _close(out["b2_log_det_W"], ref["b2_log_det_W"], 1e-3, 1e-5, name="b2_log_det_W")
    _close(out["b2_infer_sigma0"], ref["b2_infer_sigma0"], 1e-5, name="b2_infer_sigma0")


@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_without_weight_norm_matches_nvidia(folder, fmt):
    ref, out = _arrays(folder, "waveglow_io.npz"), _outputs(folder, fmt, fold=True)
    _close(out["z"], ref["nown_z"], 1e-5, name="nown_z")
    _close(out["log_s_sum"], ref["nown_log_s_sum"], 1e-3, 1e-5, name="nown_log_s_sum")
    _close(out["log_det_W"], ref["nown_log_det_W"], 1e-3, 1e-5, name="nown_log_det_W")
    _close(out["loss"], ref["nown_loss"], 1e-6, name="nown_loss")
    _close(out["infer_sigma0"], ref["nown_infer_sigma0"], 1e-5, name="nown_infer_sigma0")
    _close(
        out["infer_sigma0p6_seed1234"], ref["nown_infer_sigma0p6_seed1234"], 1e-5, name="nown_infer_sigma0p6"
    )


# -- parity with DeepLearningExamples (dle_io.npz) -----------------------------------------------
def test_dle_import_matches_dle_outputs(folder):
    ref, out = _arrays(folder, "dle_io.npz"), _outputs(folder, "dle")
    _close(out["z"], ref["z"], 1e-5, name="dle z")
    _close(out["log_s_sum"], ref["log_s_sum"], 1e-3, 1e-5, name="dle log_s_sum")
    _close(out["log_det_W"], ref["log_det_W"], 1e-3, 1e-5, name="dle log_det_W")
    _close(out["loss"], ref["loss"], 1e-6, name="dle loss")
    _close(out["b2_z"], ref["b2_z"], 1e-5, name="dle b2_z")
    _close(out["b2_loss"], ref["b2_loss"], 1e-6, name="dle b2_loss")
    _close(out["infer_sigma0"], ref["infer_sigma0"], 1e-5, name="dle infer_sigma0")
    _close(out["infer_sigma0p6_seed1234"], ref["infer_sigma0p6_seed1234"], 1e-5, name="dle infer_sigma0p6")
    nown = _outputs(folder, "dle", fold=True)
    _close(nown["infer_sigma0"], ref["nown_infer_sigma0"], 1e-5, name="dle nown_infer_sigma0")


# -- denoiser and inference.py output ------------------------------------------------------------
@functools.cache
def _denoised(folder: Path, fmt: str, fold: bool) -> dict[str, torch.Tensor]:
    from waveflow.infer.denoiser import Denoiser

    io_ = _arrays(folder, "waveglow_io.npz")
    model = _model(folder, fmt, fold)
    denoiser = Denoiser(model, n_fft=1024, hop_length=256, win_length=1024)
    infer0 = _outputs(folder, fmt, fold)["infer_sigma0"]
    with torch.no_grad():
        return {
            "bias_spec": denoiser.bias_spec,
            "denoised_infer": denoiser(infer0, 0.1),
            "denoised_audio": denoiser(io_["audio"], 0.1),
        }


@pytest.mark.parametrize("fmt", CHECKPOINTS)
def test_denoiser_matches_nvidia(folder, fmt):
    ref = _arrays(folder, "waveglow_io.npz")
    out = _denoised(folder, fmt, False)
    _close(out["bias_spec"], ref["denoiser_bias_spec"], 1e-4, name="denoiser_bias_spec")
    _close(out["denoised_infer"], ref["denoised_infer"], 1e-5, name="denoised_infer")
    _close(out["denoised_audio"], ref["denoised_audio"], 1e-5, name="denoised_audio")
    nown = _denoised(folder, fmt, True)
    _close(nown["bias_spec"], ref["nown_denoiser_bias_spec"], 1e-4, name="nown_denoiser_bias_spec")
    _close(nown["denoised_infer"], ref["nown_denoised_infer"], 1e-5, name="nown_denoised_infer")


def test_denoiser_matches_dle(folder):
    ref = _arrays(folder, "dle_io.npz")
    out, nown = _denoised(folder, "dle", False), _denoised(folder, "dle", True)
    _close(out["bias_spec"], ref["denoiser_bias_spec"], 1e-4, name="dle denoiser_bias_spec")
    _close(out["denoised_infer"], ref["denoised_infer"], 1e-5, name="dle denoised_infer")
    _close(nown["denoised_infer"], ref["nown_denoised_infer"], 1e-5, name="dle nown_denoised_infer")


def test_pcm_output_matches_inference_py_within_one_step(folder):
    """NVIDIA truncates ``audio * 32768`` toward zero; waveflow rounds and clips: at most 1 apart."""
    from waveflow.audio.io import to_pcm16

    ref = _arrays(folder, "waveglow_io.npz")
    plain = _outputs(folder, "original", fold=True)["infer_sigma0"][0]
    denoised = _denoised(folder, "original", True)["denoised_infer"][0]
    for audio, key in [
        (plain, "inference_py_int16_sigma0_nodenoise"),
        (denoised, "inference_py_int16_sigma0_denoise0p1"),
    ]:
        ours = torch.from_numpy(to_pcm16(audio).astype(np.int32))
        theirs = ref[key].to(torch.int32)
        assert (ours - theirs).abs().max() <= 1, key
        assert (ours != theirs).any(), "rounding vs truncation should differ somewhere"


# -- mapping details -----------------------------------------------------------------------------
def test_to_nvidia_state_dict_reproduces_the_original_file(folder):
    source = safe_load.CheckpointSource.from_any(folder / CHECKPOINTS["original"])
    original = nvidia.flatten_module(safe_load.load_restricted(source)["model"], "fixture")
    ours = nvidia.to_nvidia_state_dict(_model(folder, "original"))
    assert list(ours) == list(original)  # same keys, same order as glow.WaveGlow.state_dict()
    for k in original:
        assert torch.equal(ours[k], original[k]), k


def test_to_nvidia_state_dict_reproduces_the_dle_file(folder):
    raw = lzma.open(folder / CHECKPOINTS["dle"]).read()
    dle = torch.load(io.BytesIO(raw), weights_only=True)["state_dict"]
    ours = nvidia.to_nvidia_state_dict(_model(folder, "dle"), layout="dle")
    assert list(ours) == [k.removeprefix("module.") for k in dle]
    for k, v in dle.items():
        assert torch.equal(ours[k.removeprefix("module.")], v), k


def test_folded_nvidia_state_dict_imports_without_weight_norm(folder):
    folded = nvidia.to_nvidia_state_dict(_model(folder, "original", fold=True))
    assert not any(k.endswith("weight_g") for k in folded)
    config, sd, was_folded = nvidia.convert_state_dict(folded)
    assert was_folded and not config.weight_norm
    model = WaveGlow(config)
    model.load_state_dict(sd, strict=True)
    io_ = _arrays(folder, "waveglow_io.npz")
    with torch.no_grad():
        z = model.eval()(io_["audio"], io_["mel"])[0]
    _close(z, io_["nown_z"], 1e-5, name="folded z")


def test_pre_convert_model_layout_is_fused_exactly(folder):
    """Old WNs had separate residual and skip convs and per-layer cond convs; fusing them is exact."""
    nv = nvidia.to_nvidia_state_dict(_model(folder, "original"), layout="dle")
    c, n_layers = 32, 2
    old = {}
    for key, t in nv.items():
        parts = key.split(".")
        if len(parts) > 2 and parts[2] == "res_skip_layers":
            i = int(parts[3])
            base = ".".join(parts[:2])
            if i < n_layers - 1:
                old[f"{base}.res_layers.{i}.{parts[4]}"] = t[:c]
                old[f"{base}.skip_layers.{i}.{parts[4]}"] = t[c:]
            else:
                old[f"{base}.skip_layers.{i}.{parts[4]}"] = t
        else:
            old[key] = t
    config, sd, _ = nvidia.convert_state_dict(old)
    reference = _import(folder, "original").state_dict
    assert sd.keys() == reference.keys()
    for k in sd:
        assert torch.equal(sd[k], reference[k]), k


def test_half_precision_and_prefixed_state_dict(folder):
    nv = nvidia.to_nvidia_state_dict(_model(folder, "original"))
    half = {f"module.{k}": v.half() for k, v in nv.items()}
    imported = nvidia.import_nvidia(torch_bytes({"model": half}))
    assert imported.format == "nvidia-state-dict"
    for k, v in imported.state_dict.items():
        assert v.dtype == torch.float32
        assert torch.equal(v, _import(folder, "original").state_dict[k].half().float()), k


def test_unexpected_and_inconsistent_entries_are_rejected(folder):
    nv = dict(nvidia.to_nvidia_state_dict(_model(folder, "original")))
    with pytest.raises(ValueError, match="unexpected entries"):
        nvidia.convert_state_dict({**nv, "WN.0.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing start"):
        nvidia.convert_state_dict({k: v for k, v in nv.items() if not k.startswith("WN.3.start.")})
    with pytest.raises(ValueError, match="not a WaveGlow state dict"):
        nvidia.convert_state_dict({"encoder.weight": torch.zeros(1)})
    dle = {
        "epoch": 1,
        "config": {"n_mel_channels": 80, "n_flows": 12, "WN_config": {"n_channels": 64}},
        "state_dict": nv,
    }
    with pytest.raises(ValueError, match="n_channels: config 64 vs weights 32"):
        nvidia.import_nvidia(torch_bytes(dle))


def test_not_a_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        nvidia.load_nvidia_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        nvidia.load_nvidia_checkpoint(junk)
    bad_xz = tmp_path / "bad.pt.xz"
    bad_xz.write_bytes(lzma.compress(b"PK\x03\x04 not really a zip")[:-10])
    with pytest.raises(ValueError, match="xz"):
        nvidia.load_nvidia_checkpoint(bad_xz)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an NVIDIA WaveGlow checkpoint"):
        nvidia.load_nvidia_checkpoint(tmp_path / "other.pt")


# -- pickled NVIDIA modules built here: legacy format, CUDA storages, glow_old ---------------------
def _fake_glow_module(monkeypatch, module_name: str) -> types.ModuleType:
    """Classes named like NVIDIA's, registered as ``module_name`` so pickles refer to them."""
    mod = types.ModuleType(module_name)

    class WN(nn.Module):
        pass

    class Invertible1x1Conv(nn.Module):
        pass

    class WaveGlow(nn.Module):
        pass

    for cls in (WN, Invertible1x1Conv, WaveGlow):
        cls.__module__ = module_name
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, module_name, mod)
    return mod


def _nvidia_object(mod: types.ModuleType, model: WaveGlow) -> nn.Module:
    """An object laid out like NVIDIA's ``glow.WaveGlow`` (weight norm hooks included) with ``model``'s weights."""
    cfg = model.config
    c, n_layers, kernel = cfg.wavenet.n_channels, cfg.wavenet.n_layers, cfg.wavenet.kernel_size
    wn_ = nn.utils.weight_norm
    glow = mod.WaveGlow()
    glow.upsample = nn.ConvTranspose1d(
        cfg.n_mels, cfg.n_mels, cfg.upsample_kernel_size, stride=cfg.hop_length
    )
    glow.n_flows, glow.n_group = cfg.n_flows, cfg.n_group
    glow.n_early_every, glow.n_early_size = cfg.n_early_every, cfg.n_early_size
    glow.WN, glow.convinv = nn.ModuleList(), nn.ModuleList()
    for channels in model.schedule.channels:
        wn = mod.WN()
        wn.n_layers, wn.n_channels = n_layers, c
        wn.in_layers, wn.res_skip_layers = nn.ModuleList(), nn.ModuleList()
        wn.start = wn_(nn.Conv1d(channels // 2, c, 1))
        wn.end = nn.Conv1d(c, 2 * (channels - channels // 2), 1)
        wn.cond_layer = wn_(nn.Conv1d(cfg.n_mels * cfg.n_group, 2 * c * n_layers, 1))
        for i in range(n_layers):
            wn.in_layers.append(wn_(nn.Conv1d(c, 2 * c, kernel, dilation=2**i, padding=2**i)))
            wn.res_skip_layers.append(wn_(nn.Conv1d(c, 2 * c if i < n_layers - 1 else c, 1)))
        glow.WN.append(wn)
        inv = mod.Invertible1x1Conv()
        inv.conv = nn.Conv1d(channels, channels, 1, bias=False)
        glow.convinv.append(inv)
    glow.load_state_dict(nvidia.to_nvidia_state_dict(model))
    return glow


@pytest.fixture
def small_model() -> WaveGlow:
    return perturbed_model(presets.waveglow_tiny().replace(n_mels=8), seed=3, std=0.02)  # no identities


def _same_outputs(a: WaveGlow, b: WaveGlow) -> None:
    mel = torch.randn(2, a.n_mels, 4)
    audio = torch.randn(2, 4 * a.hop_length) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(a(audio, mel)[0], b(audio, mel)[0], atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # the legacy writer, on our fake classes
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pre-1.6"])
def test_pickled_nvidia_module_imports_without_its_classes(monkeypatch, small_model, legacy):
    mod = _fake_glow_module(monkeypatch, "glow")
    obj = _nvidia_object(mod, small_model)
    data = torch_bytes({"model": obj, "iteration": 7}, _use_new_zipfile_serialization=not legacy)
    monkeypatch.delitem(sys.modules, "glow")  # the classes are not importable when loading
    imported = nvidia.import_nvidia(data)
    assert imported.format == "nvidia-original" and imported.info == {"iteration": 7}
    assert imported.config == small_model.config
    model = WaveGlow(imported.config)
    model.load_state_dict(imported.state_dict)
    _same_outputs(model.eval(), small_model)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cuda_saved_nvidia_module_loads_with_map_location(monkeypatch, small_model):
    mod = _fake_glow_module(monkeypatch, "glow")
    obj = _nvidia_object(mod, small_model)
    # Stamp every storage with a CUDA location, as NVIDIA's GPU-trained pickles have.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    data = torch_bytes({"model": obj})
    monkeypatch.undo()
    assert b"cuda:0" in data
    imported = nvidia.import_nvidia(data, map_location="cpu")
    assert all(v.device.type == "cpu" for v in imported.state_dict.values())


# glow_old's sizes: its infer() hard-codes an early output every 4 flows, so the model has 4 per block.
GLOW_OLD = {"n_mels": 8, "n_flows": 6, "n_group": 4, "n_early_every": 4, "n_early_size": 2}
GLOW_OLD_WN = {"n_layers": 2, "n_channels": 16, "kernel_size": 3}


def _glow_old_object(mod: types.ModuleType) -> nn.Module:
    """A random model laid out like ``glow_old.WaveGlow`` (its WN: one ``cond_layers`` conv per layer),
    the upsampler 1024/256 as glow_old.py hard-codes it; no coupling is an identity."""
    n_mels, n_group, size = GLOW_OLD["n_mels"], GLOW_OLD["n_group"], GLOW_OLD["n_early_size"]
    c, n_layers, kernel = GLOW_OLD_WN["n_channels"], GLOW_OLD_WN["n_layers"], GLOW_OLD_WN["kernel_size"]
    wn_ = nn.utils.weight_norm
    glow = mod.WaveGlow()
    glow.upsample = nn.ConvTranspose1d(n_mels, n_mels, 1024, stride=256)
    glow.n_flows, glow.n_group = GLOW_OLD["n_flows"], n_group
    glow.n_early_every, glow.n_early_size = GLOW_OLD["n_early_every"], size
    glow.WN, glow.convinv = nn.ModuleList(), nn.ModuleList()
    channels = n_group
    for k in range(glow.n_flows):
        if k % glow.n_early_every == 0 and k > 0:
            channels -= size
        wn = mod.WN()
        wn.n_layers, wn.n_channels = n_layers, c
        wn.in_layers, wn.res_skip_layers, wn.cond_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        wn.start = wn_(nn.Conv1d(channels // 2, c, 1))
        wn.end = nn.Conv1d(c, 2 * (channels // 2), 1)
        for i in range(n_layers):
            wn.in_layers.append(wn_(nn.Conv1d(c, 2 * c, kernel, dilation=2**i, padding=2**i)))
            wn.cond_layers.append(wn_(nn.Conv1d(n_mels * n_group, 2 * c, 1)))
            wn.res_skip_layers.append(wn_(nn.Conv1d(c, 2 * c if i < n_layers - 1 else c, 1)))
        with torch.no_grad():
            wn.end.weight.mul_(0.3)  # random but tame log-scales
        glow.WN.append(wn)
        inv = mod.Invertible1x1Conv()
        inv.conv = nn.Conv1d(channels, channels, 1, bias=False)
        with torch.no_grad():
            inv.conv.weight.copy_(torch.linalg.qr(torch.randn(channels, channels))[0][:, :, None])
        glow.convinv.append(inv)
    return glow


def _glow_old_wn(wn: nn.Module, audio: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
    """``glow_old.WN.forward``: the conditioning enters every layer through its own ``cond_layers[i]``."""
    c = wn.n_channels
    audio = wn.start(audio)
    output = 0
    for i in range(wn.n_layers):
        in_act = wn.in_layers[i](audio) + wn.cond_layers[i](spect)
        acts = torch.tanh(in_act[:, :c]) * torch.sigmoid(in_act[:, c:])
        res_skip_acts = wn.res_skip_layers[i](acts)
        if i < wn.n_layers - 1:
            audio = res_skip_acts[:, :c] + audio
            output = output + res_skip_acts[:, c:]
        else:
            output = output + res_skip_acts
    return wn.end(output)


def _glow_old_infer(glow: nn.Module, spect: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``glow_old.WaveGlow.infer`` of NVIDIA/waveglow, transcribed, with the noise given as ``z``
    ``(B, n_group, T / n_group)`` (each early block first, then the remaining channels) instead of
    drawn: odd flows transform the first half and condition on the second (the alternation)."""
    spect = glow.upsample(spect)
    time_cutoff = glow.upsample.kernel_size[0] - glow.upsample.stride[0]
    spect = spect[:, :, :-time_cutoff]
    spect = spect.unfold(2, glow.n_group, glow.n_group).permute(0, 2, 1, 3)
    spect = spect.contiguous().view(spect.size(0), spect.size(1), -1).permute(0, 2, 1)
    early = [k for k in range(glow.n_flows) if k % 4 == 0 and k > 0]
    offset = len(early) * glow.n_early_size
    blocks = dict(zip(early, z[:, :offset].split(glow.n_early_size, dim=1)))
    audio = z[:, offset:]
    for k in reversed(range(glow.n_flows)):
        n_half = int(audio.size(1) / 2)
        if k % 2 == 0:
            audio_0 = audio[:, :n_half, :]
            audio_1 = audio[:, n_half:, :]
        else:
            audio_1 = audio[:, :n_half, :]
            audio_0 = audio[:, n_half:, :]
        output = _glow_old_wn(glow.WN[k], audio_0, spect)
        s = output[:, n_half:, :]
        b = output[:, :n_half, :]
        audio_1 = (audio_1 - b) / torch.exp(s)
        if k % 2 == 0:
            audio = torch.cat([audio[:, :n_half, :], audio_1], 1)
        else:
            audio = torch.cat([audio_1, audio[:, n_half:, :]], 1)
        w_inverse = torch.linalg.inv(glow.convinv[k].conv.weight.squeeze(2).double()).float()
        audio = nn.functional.conv1d(audio, w_inverse[:, :, None])
        if k % 4 == 0 and k > 0:
            audio = torch.cat((blocks[k], audio), 1)
    return audio.permute(0, 2, 1).contiguous().view(audio.size(0), -1)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_glow_old_checkpoints_decode_as_glow_old_py_does(monkeypatch):
    """nvidia.py: glow_old.py's WaveGlow alternates which half conditions the coupling (odd flows use
    the second half). A pickled glow_old model (with glow_old's per-layer ``cond_layers``) imports to
    a model whose audio is glow_old's ``infer``; the same weights without the alternation give other
    audio, so this fails if the import did not apply what glow_old.py does."""
    mod = _fake_glow_module(monkeypatch, "glow_old")
    torch.manual_seed(5)
    obj = _glow_old_object(mod)
    data = torch_bytes({"model": obj, "iteration": 3})
    monkeypatch.delitem(sys.modules, "glow_old")
    imported = nvidia.import_nvidia(data)
    assert imported.format == "nvidia-original" and imported.config.alternate_halves
    model = WaveGlow(imported.config)
    model.load_state_dict(imported.state_dict)
    plain = WaveGlow(imported.config.replace(alternate_halves=False))
    plain.load_state_dict(imported.state_dict)
    mel = torch.randn(2, GLOW_OLD["n_mels"], 3)
    z = torch.randn(2, GLOW_OLD["n_group"], 3 * 256 // GLOW_OLD["n_group"])
    with torch.no_grad():
        for latent in (z, torch.zeros_like(z)):  # zeros: glow_old's infer at sigma 0
            expected = _glow_old_infer(obj, mel, latent)
            torch.testing.assert_close(model.eval().decode(latent, mel), expected, atol=1e-5, rtol=0)
            assert (plain.eval().decode(latent, mel) - expected).abs().max() > 1e-2


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore:.*torch.qr is deprecated")  # NVIDIA's Invertible1x1Conv
def test_nvidias_own_glow_old_model_imports_with_its_audio(monkeypatch):
    """The same claim against NVIDIA's code itself (PyPI ``waveglow``, which CI installs): a pickled
    ``waveglow.glow_old.WaveGlow`` imports to a model that decodes the zero latent to its ``infer``
    at sigma 0, and so does the transcription above."""
    glow_old = pytest.importorskip("waveglow.glow_old", reason="needs PyPI waveglow==22.12.28 (--no-deps)")
    torch.manual_seed(5)
    real = glow_old.WaveGlow(**{k: v for k, v in GLOW_OLD.items() if k != "n_mels"},
                             n_mel_channels=GLOW_OLD["n_mels"], WN_config=GLOW_OLD_WN)  # fmt: skip
    randomize_(real, 0.05).eval()  # its ends start at zero: identity couplings would hide the halves
    imported = nvidia.import_nvidia(torch_bytes({"model": real}))
    assert imported.config.alternate_halves
    model = WaveGlow(imported.config)
    model.load_state_dict(imported.state_dict)
    # glow_old's infer draws its noise with torch.cuda.FloatTensor(...).normal_(); sigma 0 zeroes it.
    monkeypatch.setattr(torch.cuda, "FloatTensor", lambda *size: torch.empty(*size), raising=False)
    mel = torch.randn(2, GLOW_OLD["n_mels"], 3)
    zeros = torch.zeros(2, GLOW_OLD["n_group"], 3 * 256 // GLOW_OLD["n_group"])
    with torch.no_grad():
        expected = real.infer(mel, sigma=0.0)
        torch.testing.assert_close(model.eval().decode(zeros, mel), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(_glow_old_infer(real, mel, zeros), expected, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_bare_pickled_module_and_folded_weights(monkeypatch, small_model):
    mod = _fake_glow_module(monkeypatch, "glow")
    obj = _nvidia_object(mod, small_model)
    for wn in obj.WN:  # NVIDIA's remove_weightnorm
        for m in [wn.start, wn.cond_layer, *wn.in_layers, *wn.res_skip_layers]:
            nn.utils.remove_weight_norm(m)
    data = torch_bytes(obj)
    monkeypatch.delitem(sys.modules, "glow")
    imported = nvidia.import_nvidia(data)
    assert imported.weight_norm_folded and not imported.config.weight_norm
    model = WaveGlow(imported.config)
    model.load_state_dict(imported.state_dict)
    _same_outputs(model.eval(), small_model)
