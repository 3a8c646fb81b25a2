"""Smoke tests of the benchmark tools at tiny sizes (seconds), and the FLOP counts against torch's.

No timing is asserted: the tools must run, write well-formed JSON, and report outputs that agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, mm_flop

from tests.helpers import random_model, read_log, seeded
from tests.test_model import VARIANTS
from waveflow.infer.fast import FastWaveGlow
from waveflow.model import WaveGlow
from waveflow.nn import WaveNet
from waveflow.presets import waveglow_tiny

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    import bench_inference
    import bench_train
    import flops
    import gpu_bench
    import perf_table

    return {
        "bench_inference": bench_inference,
        "bench_train": bench_train,
        "flops": flops,
        "gpu_bench": gpu_bench,
        "perf_table": perf_table,
    }


def _installed(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


# -- FLOP counts --------------------------------------------------------------------------------------
# torch's counter does not know the in-place GEMM and oneDNN's linear that FastWaveGlow uses.
_EXTRA_COUNTS = {
    torch.ops.aten.addmm_: lambda inp, a, b, *args, out_shape=None, **kw: mm_flop(a, b),
    torch.ops.mkldnn._linear_pointwise: lambda x, w, *args, out_shape=None, **kw: 2 * x[0] * x[1] * w[0],
}


def _nvidia_arithmetic(model: WaveGlow) -> WaveGlow:
    """Make ``model`` compute NVIDIA's layer-by-layer arithmetic (what the reference count counts)."""
    for module in model.modules():
        if isinstance(module, WaveNet):
            module.fold_linear_maps = False
            module.winograd_min_dilation = None
    return model


@pytest.mark.parametrize("name", ["waveglow", "nice", "realnvp", "glow"])
@pytest.mark.parametrize("frames", [1, 3])
def test_flop_counts_match_torch_counter(tools, name, frames):
    flops = tools["flops"]
    cfg = VARIANTS[name]
    model = _nvidia_arithmetic(random_model(cfg))
    mel = torch.randn(2, cfg.n_mels, frames)
    z = torch.randn(2, cfg.n_group, frames * cfg.hop_length // cfg.n_group)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(z, mel)
    reference = flops.reference_flops(cfg, frames, batch_size=2)
    # The LU 1x1 conv assembles its (c, c) matrix with two tiny matmuls per step; NVIDIA's has none.
    assembly = 2 * 2 * cfg.n_group**3 * cfg.n_flows if cfg.mixing == "conv1x1_lu" else 0
    assert abs(counter.get_total_flops() - reference["total"]) <= assembly
    for fold in (True, False):
        fast = FastWaveGlow.from_model(model, fold_upsampler=fold)
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_COUNTS) as counter:
            fast.decode(z, mel)
        assert counter.get_total_flops() == flops.fast_flops(cfg, frames, 2, fold_upsampler=fold)["total"]


@pytest.mark.parametrize("frames", [2, 5])
def test_flop_count_of_the_compact_family_matches_torch_counter(tools, frames):
    """The frame-rate encoder and the separable convolutions, counted by hand and by torch."""
    flops = tools["flops"]
    cfg = VARIANTS["compact"]
    model = random_model(cfg)
    mel = torch.randn(2, cfg.n_mels, frames)
    z = torch.randn(2, cfg.n_group, frames * cfg.hop_length // cfg.n_group)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(z, mel)
    # torch counts a grouped (depthwise) convolution as a dense one divided by the groups: equal.
    assert counter.get_total_flops() == flops.reference_flops(cfg, frames, batch_size=2)["total"]


def test_flops_of_nvidias_model(tools, monkeypatch):
    """The issue's figures: ~448 GFLOP per second of audio for the reference, ~300 for the folded
    fast path with direct dilated convs, ~212 with Winograd F(4, 3) (half of those convs' 183).

    The reference figure is torch's own count of the LJSpeech model's decode of 861 frames (10 s),
    on the meta device (shapes only, no arithmetic); the fast path's formula is held to torch's
    counter on the small models above (FastWaveGlow cannot fold meta weights)."""
    flops = tools["flops"]
    from waveflow.flows import invertible_conv
    from waveflow.presets import waveglow_ljspeech

    cfg = waveglow_ljspeech()
    # Weights on the meta device: the random rotation's sign check would read a value.
    monkeypatch.setattr(invertible_conv, "random_rotation", lambda c, generator=None: torch.empty(c, c))
    with torch.device("meta"):
        model = _nvidia_arithmetic(WaveGlow(cfg).eval())
        mel = torch.empty(1, cfg.n_mels, 861)
        z = torch.empty(1, cfg.n_group, 861 * cfg.hop_length // cfg.n_group)
    with FlopCounterMode(display=False) as counter, torch.no_grad():  # decode() would check values
        model.flow.inverse(z, model.condition(mel, 861 * cfg.hop_length))
    counted = flops.per_second({"total": counter.get_total_flops()}, 861, cfg.hop_length)["total"]
    ref = flops.per_second(flops.reference_flops(cfg, 861), 861, cfg.hop_length)["total"]
    assert ref == counted and 440 < counted < 455
    direct = flops.per_second(flops.fast_flops(cfg, 861, winograd=False), 861, cfg.hop_length)["total"]
    fast = flops.per_second(flops.fast_flops(cfg, 861), 861, cfg.hop_length)["total"]
    assert 290 < direct < 310
    assert 205 < fast < 220


def test_flops_cli_reports_torchs_counts(tools, capsys):
    """The CLI's GFLOP per second of audio are torch's counts of the tiny model's decode of 4 frames
    (reference arithmetic, and the fast engine with and without the upsampler folded)."""
    assert tools["flops"].main(["--preset", "waveglow_tiny", "--frames", "4"]) == 0
    report = json.loads(capsys.readouterr().out)["gflop_per_second_of_audio"]
    cfg = waveglow_tiny()
    model = _nvidia_arithmetic(random_model(cfg))
    mel = torch.randn(1, cfg.n_mels, 4)
    z = torch.randn(1, cfg.n_group, 4 * cfg.hop_length // cfg.n_group)
    seconds = 4 * cfg.hop_length / 22050
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(z, mel)
    counted = {"reference": counter.get_total_flops()}
    for name, fold in (("fast_folded", True), ("fast_unfolded", False)):
        fast = FastWaveGlow.from_model(random_model(cfg), fold_upsampler=fold)
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_COUNTS) as counter:
            fast.decode(z, mel)
        counted[name] = counter.get_total_flops()
    assert set(report) == set(counted)
    for name, total in counted.items():
        assert report[name]["total"] == pytest.approx(total / seconds / 1e9, rel=1e-12), name


# -- bench_inference ----------------------------------------------------------------------------------
def test_bench_inference_smoke(tools, tmp_path):
    out = tmp_path / "inference.json"
    argv = ["--presets", "waveglow_tiny", "--seconds", "0.1", "--batch-sizes", "1", "2"]
    argv += ["--repeats", "1", "--warmup", "0", "--threads", "1", "--griffin-lim-iters", "2"]
    argv += ["--wavenet-size", "tiny", "--wavenet-frames", "1", "--out", str(out)]
    assert tools["bench_inference"].main(argv) == 0
    report = json.loads(out.read_text())
    assert [c["batch"] for c in report["cases"]] == [1, 2]
    for case in report["cases"]:
        variants = case["variants"]
        expected = {"waveflow", "waveflow_nown", "fast_unfolded", "fast"}
        if _installed("waveglow"):
            expected.add("nvidia")
        assert expected <= set(variants)
        for name, entry in variants.items():
            assert entry["finite"], name
            assert entry["max_abs_diff"] < 1e-4, name  # same audio for the same noise
            # The derived columns are the timings' (no speed is asserted): rtf = time / audio time.
            assert entry["rtf"] == pytest.approx(entry["median_s"] / case["audio_seconds"], rel=1e-9), name
    names = {b["name"] for b in report["baselines"]}
    assert "griffin_lim" in names and "wavenet" in names


@pytest.mark.skipif(not _installed("waveglow"), reason="needs PyPI waveglow==22.12.28 (--no-deps)")
def test_nvidia_patch_is_undone(tools):
    bench = tools["bench_inference"]
    saved = torch.cuda.FloatTensor
    model = bench.build_model(waveglow_tiny(), seed=0)
    ref, why = bench.nvidia_model(model)
    assert why is None
    fn = bench._infer_fn("nvidia", ref, torch.randn(1, 80, 2), 0.6, 0)
    audio = fn()
    assert audio.shape == (1, 512)
    assert torch.cuda.FloatTensor is saved


# -- bench_train ----------------------------------------------------------------------------------
def test_bench_train_smoke(tools, tmp_path):
    out = tmp_path / "train.json"
    argv = ["--preset", "waveglow_tiny", "--segment", "1024", "--batch-size", "2", "--repeats", "1"]
    argv += ["--threads", "1", "--out", str(out), "--variants", "nvidia", "waveflow", "waveflow_direct"]
    assert tools["bench_train"].main(argv) == 0
    report = json.loads(out.read_text())
    for name in ("waveflow", "waveflow_direct"):
        waveflow = report["variants"][name]
        assert "peak_rss_mb" in waveflow["memory"]
        if _installed("waveglow"):
            # same weights, same batch: the same gradients (the losses differ by a constant)
            assert waveflow["max_grad_diff"] < 1e-5
            pairs = waveflow["pair_speedups"]
            assert pairs["min"] <= pairs["median"] <= pairs["max"]
    if _installed("waveglow"):
        assert "memory" in report["variants"]["nvidia"]


# -- bench_winograd -------------------------------------------------------------------------------
def test_bench_winograd_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    import bench_winograd

    out = tmp_path / "winograd.json"
    argv = ["--channels", "8", "--frames", "50", "--dilations", "1", "4", "--repeats", "2", "--warmup", "1"]
    argv += ["--threads", "1", "--out", str(out)]
    assert bench_winograd.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["dilations"]) == {"1", "4"}
    for entry in report["dilations"].values():
        assert max(entry["max_rel_diff"].values()) < 1e-5  # same numbers from every variant
        for use in ("train", "forward"):
            assert set(entry[use]) >= {"f23", "f43"}  # every tile was timed (no speed is asserted)
    with pytest.raises(SystemExit):
        bench_winograd.main(["--dilations", "0"])


# -- gpu_bench ------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed without a GPU")
def test_gpu_bench_exits_cleanly_without_cuda():
    result = subprocess.run(
        [sys.executable, str(TOOLS / "gpu_bench.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TOOLS,
        env={**os.environ, "PYTHONPATH": str(TOOLS.parent)},
    )
    assert result.returncode == 0
    assert "no CUDA device" in result.stderr


# -- perf_table -----------------------------------------------------------------------------------
def test_perf_table_renders_the_benchmarks(tools, tmp_path, capsys):
    inference, train = tmp_path / "inference.json", tmp_path / "train.json"
    argv = ["--presets", "waveglow_tiny", "--seconds", "0.05", "0.1", "--repeats", "1", "--warmup", "0"]
    argv += ["--threads", "1", "--griffin-lim-iters", "1", "--wavenet-size", "tiny", "--wavenet-frames", "1"]
    assert tools["bench_inference"].main(argv + ["--out", str(inference)]) == 0
    argv = [
        "--preset",
        "waveglow_tiny",
        "--segment",
        "512",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--no-memory",
    ]
    assert tools["bench_train"].main(argv + ["--out", str(train)]) == 0
    capsys.readouterr()
    assert tools["perf_table"].main([str(inference), str(train)]) == 0
    table = capsys.readouterr().out
    report = json.loads(inference.read_text())
    longest = max(c["audio_seconds"] for c in report["cases"])
    fast = next(c for c in report["cases"] if c["audio_seconds"] == longest)["variants"]["fast"]
    row = next(line for line in table.splitlines() if "upsampler folded" in line)
    assert row.startswith("| `waveglow_tiny` |") and f"| {fast['rtf']:.3f} |" in row
    assert "Griffin-Lim" in table
    # The WaveNet row exists only where its competitor could be timed (an optional package).
    assert ("autoregressive WaveNet" in table) == _installed("wavenet_vocoder")
    assert "samples/s" in table and "| waveflow (`WaveGlow.forward`" in table
    if _installed("waveglow"):  # the pairwise ratio column, from the repeats' times
        train_row = next(line for line in table.splitlines() if "| waveflow (`WaveGlow.forward`" in line)
        ratio = (
            json.loads(train.read_text())["variants"]["nvidia"]["times_s"][0]
            / json.loads(train.read_text())["variants"]["waveflow"]["times_s"][0]
        )
        assert f"| {ratio:.2f} ({ratio:.2f}–{ratio:.2f}) |" in train_row


# -- learning_curves ---------------------------------------------------------------------------------
def test_learning_curves_score_a_run_and_reuse_a_report(tmp_path, monkeypatch):
    import yaml

    from tests.train.conftest import base_config, write_corpus
    from waveflow.train import load_config, train

    monkeypatch.syspath_prepend(str(TOOLS))
    import learning_curves

    clips = write_corpus(tmp_path, [4000, 4000], "clip")
    data = base_config(clips, None)
    data["train"].update(max_steps=2, checkpoint_every=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    train(load_config(tmp_path / "c.yaml"), tmp_path / "run")
    out, png = tmp_path / "curves.json", tmp_path / "curves.png"
    argv = ["--run", f"tiny={tmp_path / 'run'}", "--filelist", str(clips), "--griffin-lim-iters", "2"]
    assert learning_curves.main([*argv, "--out", str(out), "--plot", str(png)]) == 0
    report = json.loads(out.read_text())
    curve = report["runs"]["tiny"]
    assert [p["step"] for p in curve] == [1, 2]
    # The x axis is the CPU time the run logged with each checkpoint, not a time measured here.
    logged = [
        r for r in read_log(tmp_path / "run") if r["event"] == "checkpoint" and r.get("reason") != "best"
    ]
    assert [(p["checkpoint"], p["cpu_minutes"]) for p in curve] == [
        (r["path"], r["cpu_s"] / 60) for r in logged
    ]
    # The scores are those of the documented synthesis (sigma 0.6, seed 0 + clip index), recomputed here.
    from waveflow import Vocoder
    from waveflow.audio.io import load_audio
    from waveflow.data.filelists import read_filelist
    from waveflow.eval import metrics

    vocoder = Vocoder.from_checkpoint(curve[-1]["checkpoint"])
    scores = []
    for index, path in enumerate(read_filelist(clips)):
        audio, _ = load_audio(path, vocoder.sample_rate)
        generated, _ = vocoder(vocoder.mel(audio, vocoder.sample_rate), sigma=0.6, generator=seeded(index))
        reference, estimate = metrics.align(audio, generated[0].clamp(-1, 1).numpy())
        stft = metrics.multi_resolution_stft_distance(reference, estimate).total
        scores.append((metrics.stoi(reference, estimate, vocoder.sample_rate), stft))
    assert curve[-1]["stoi"] == pytest.approx(sum(s for s, _ in scores) / len(scores), rel=1e-9)
    assert curve[-1]["mrstft"] == pytest.approx(sum(m for _, m in scores) / len(scores), rel=1e-9)
    assert set(report["griffin_lim"]) == set(learning_curves.METRICS) and png.stat().st_size > 1000
    # Reusing the report scores nothing again.
    monkeypatch.setattr(learning_curves, "score", lambda *a: pytest.fail("re-scored a reused checkpoint"))
    again = tmp_path / "again.json"
    assert learning_curves.main([*argv, "--reuse", str(out), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["runs"] == report["runs"]
