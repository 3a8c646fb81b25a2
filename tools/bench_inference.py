"""Inference speed on this machine: waveflow (plain and fast) against NVIDIA's reference code, an
autoregressive WaveNet and Griffin-Lim, with the CPU's matmul peak measured in the same run.

Every number is compute time per second of 22050 Hz audio (``rtf``; below 1 is faster than real
time) and kHz (audio samples produced per second of compute), as median/min/max over ``--repeats``
runs after ``--warmup``. Variants of one case run interleaved (A B C A B C ...), so slow phases of a
shared machine hit all of them; each run also records the CPU time other processes used meanwhile
(``other_load_cores``, from ``/proc/stat``), so a noisy run can be recognised.

Variants (all decode the same mel with the same noise; ``max_abs_diff`` is against ``waveflow``, or
``nvidia`` when ``waveflow`` is not run: ``max_abs_diff_vs``):

* ``nvidia``: NVIDIA/waveglow's ``glow.WaveGlow`` (PyPI ``waveglow==22.12.28``) on the same weights
  (``waveflow.interop.nvidia.to_nvidia_state_dict``), weight norm removed as its ``inference.py``
  does. Its ``infer`` creates ``torch.cuda.FloatTensor`` noise; only here, during its calls, that
  name is patched to make CPU tensors (same numbers as ``torch.randn``).
* ``waveflow``: :meth:`WaveGlow.infer` as trained (weight norm as a parametrization);
  ``waveflow_nown``: the same with weight norm folded.
* ``fast_unfolded`` / ``fast``: :class:`waveflow.infer.fast.FastWaveGlow` without / with the
  upsampler folded into the conditioning; ``fast_budget``: folded into as many layers as
  ``--fold-budget-mb`` of folded weight allow (``fold_upsampler=<bytes>``).

Memory (unless ``--no-memory``): per variant and mel length (batch 1), a fresh process builds the
variant from the same weights, drops the source model unless it is the variant, and reports its
resident memory after the build and the peak RSS of one synthesis (``memory``, MiB, see
:func:`memory_probe`), and ``peak_rss_minus_nvidia_mb``.

Baselines, once per mel length: ``griffin_lim`` (librosa, 32 iterations, on ``exp(mel)``) and
``wavenet`` (PyPI ``wavenet-vocoder==0.1.1``, r9y9's WaveNet in its LJSpeech configuration,
incremental generation of ``--wavenet-frames`` frames, scaled to 1 s).

FLOPs: ``gflops_reference_count`` divides the FLOPs of the *reference* architecture
(``tools/flops.py``) by the time, so algebraic savings show up as speed;
``fraction_of_matmul_peak`` compares that with the fp32 GEMM rate of ``torch.mm`` measured at the
start and end of the run (the larger). Weights are random (``--seed``) unless
``--nvidia-checkpoint`` is given; speed does not depend on them.

    python tools/bench_inference.py --out bench_inference.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flops
import torch
from bench_report import reset_peak_rss, status_mb, write_report

from waveflow import presets
from waveflow.config import ModelConfig
from waveflow.infer.fast import FastWaveGlow, folded_cond_bytes
from waveflow.model import WaveGlow

SAMPLE_RATE = 22050
# r9y9/wavenet_vocoder's LJSpeech preset (mixture of logistics, raw audio, 22050 Hz, hop 256).
WAVENET_CONFIGS = {
    "ljspeech": dict(layers=24, stacks=4, residual_channels=512, gate_channels=512, skip_out_channels=256),
    "tiny": dict(layers=4, stacks=2, residual_channels=16, gate_channels=16, skip_out_channels=16),
}
WAVENET_LOG_SCALE_MIN = math.log(1e-14)  # their hparams: float(np.log(1e-14))


# -- measurement --------------------------------------------------------------------------------
def _busy_cpu_seconds() -> float | None:
    """CPU seconds spent by everything on the machine (all cores), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Timer:
    """Times one block: wall seconds, this process's CPU seconds, other processes' CPU seconds."""

    def __enter__(self) -> Timer:
        self._busy, self._own, self._t = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t
        self.own_cpu = _own_cpu_seconds() - self._own
        busy = _busy_cpu_seconds()
        self.other_cpu = (
            None if busy is None or self._busy is None else max(busy - self._busy - self.own_cpu, 0.0)
        )


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    after_round: Callable[[dict[str, list[float]]], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float | None]]]:
    """``repeats`` rounds of every function in turn (A B A B, so machine noise cancels in ratios):
    per function, the wall seconds and other processes' CPU seconds of each call."""
    walls: dict[str, list[float]] = {k: [] for k in fns}
    others: dict[str, list[float | None]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            with Timer() as t:
                fn()
            walls[key].append(t.wall)
            others[key].append(t.other_cpu)
        if after_round is not None:
            after_round(walls)
    return walls, others


def matmul_gflops(sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 4) -> float:
    """Best fp32 ``torch.mm`` rate over square sizes, GFLOP/s, with the current thread setting."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def summarize(walls: list[float], others: list[float | None]) -> dict[str, Any]:
    known = [o for o, w in zip(others, walls) if o is not None]
    return {
        "times_s": walls,
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "other_load_cores": statistics.median([o / w for o, w in zip(known, walls)]) if known else None,
    }


# -- models -------------------------------------------------------------------------------------
def model_config(name: str) -> ModelConfig:
    """A builder in :mod:`waveflow.presets` by name, or a ``ModelConfig`` dict in a JSON file."""
    if name.endswith(".json"):
        return ModelConfig.from_dict(json.loads(Path(name).read_text()))
    builder = getattr(presets, name, None)
    if builder is None:
        raise SystemExit(f"unknown preset {name!r} (a builder in waveflow.presets, or a .json ModelConfig)")
    return builder()


def build_model(cfg: ModelConfig, seed: int, std: float = 0.02) -> WaveGlow:
    """A WaveGlow with random, non-degenerate weights (every coupling acts; outputs stay finite)."""
    torch.manual_seed(seed)
    model = WaveGlow.from_config(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def folded_copy(model: WaveGlow) -> WaveGlow:
    """A copy of ``model`` with weight norm folded (the original keeps its parametrization)."""
    clone = WaveGlow.from_config(model.config)
    if not any(".parametrizations." in k for k in model.state_dict()):
        clone.remove_weight_norm()
    clone.load_state_dict(model.state_dict())
    return clone.remove_weight_norm().eval()


def nvidia_model(model: WaveGlow) -> tuple[torch.nn.Module | None, str | None]:
    """NVIDIA's ``glow.WaveGlow`` with ``model``'s weights, weight norm removed; or (None, why not)."""
    try:
        from waveglow import glow  # PyPI waveglow==22.12.28: NVIDIA's glow.py
    except ImportError:
        return None, "not installed: pip install --no-deps waveglow==22.12.28"
    from waveflow.interop.nvidia import to_nvidia_state_dict

    cfg = model.config
    if cfg.conditioning != "upsample" or cfg.wavenet.separable:
        return None, "the compact family has no counterpart in NVIDIA's code"
    try:
        state = to_nvidia_state_dict(model)
    except ValueError as exc:
        return None, str(exc)
    wn = cfg.wavenet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        ref = glow.WaveGlow(
            n_mel_channels=cfg.n_mels,
            n_flows=cfg.n_flows,
            n_group=cfg.n_group,
            n_early_every=cfg.n_early_every,
            n_early_size=cfg.n_early_size,
            WN_config={"n_layers": wn.n_layers, "n_channels": wn.n_channels, "kernel_size": wn.kernel_size},
        )
        weight_norm = any(k.endswith("weight_g") for k in state)
        if not weight_norm:  # a folded model: load plain weights into a folded reference
            ref = glow.WaveGlow.remove_weightnorm(ref)
        ref.load_state_dict(state)
        if weight_norm:
            ref = glow.WaveGlow.remove_weightnorm(ref)  # what NVIDIA's inference.py does
    return ref.eval(), None


@contextlib.contextmanager
def cpu_cuda_tensors() -> Iterator[None]:
    """During NVIDIA's ``infer`` only: ``torch.cuda.FloatTensor(*size)`` -> an empty CPU tensor.

    Its ``.normal_()`` then draws from the default CPU generator exactly as ``torch.randn`` would.
    """
    saved = torch.cuda.FloatTensor
    torch.cuda.FloatTensor = lambda *size: torch.empty(*size)  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.FloatTensor = saved  # type: ignore[assignment]


def wavenet_seconds_per_second(frames: int, size: str, hop_length: int, n_mels: int) -> dict[str, Any]:
    """r9y9's WaveNet: incremental generation of ``frames * hop`` samples, scaled to 1 s of audio."""
    try:
        from wavenet_vocoder import WaveNet
    except ImportError:
        return {"skipped": "not installed: pip install --no-deps wavenet-vocoder==0.1.1"}
    scales = [4, 4, 4, 4] if hop_length == 256 else [hop_length]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = WaveNet(
            out_channels=30,  # 10 logistic mixtures x (pi, mu, log_scale)
            kernel_size=3,
            dropout=0.05,
            cin_channels=n_mels,
            gin_channels=-1,
            weight_normalization=True,
            upsample_conditional_features=True,
            upsample_scales=scales,
            freq_axis_kernel_size=3,
            scalar_input=True,
            legacy=True,
            **WAVENET_CONFIGS[size],
        )
        net.eval()
        net.make_generation_fast_()
        mel = torch.randn(1, n_mels, frames)
        samples = frames * hop_length
        with torch.no_grad(), Timer() as t:
            net.incremental_forward(
                torch.zeros(1, 1, 1),
                c=mel,
                T=samples,
                softmax=False,
                quantize=False,
                log_scale_min=WAVENET_LOG_SCALE_MIN,
            )
    rtf = t.wall / (samples / SAMPLE_RATE)
    return {
        "config": size,
        "samples": samples,
        "wall_s": t.wall,
        "rtf": rtf,
        "khz": samples / t.wall / 1e3,
        "other_load_cores": None if t.other_cpu is None else t.other_cpu / t.wall,
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def griffin_lim_run(mel: torch.Tensor, hop_length: int, n_iter: int) -> Callable[[], None] | None:
    """``() -> None`` that inverts ``exp(mel)`` (B, n_mels, F) with librosa; None without librosa."""
    try:
        import librosa
    except ImportError:
        return None
    spec = torch.exp(mel).numpy()

    def run() -> None:
        for item in spec:
            librosa.feature.inverse.mel_to_audio(
                item,
                sr=SAMPLE_RATE,
                n_fft=1024,
                hop_length=hop_length,
                win_length=1024,
                power=1.0,
                n_iter=n_iter,
                fmin=0.0,
                fmax=8000.0,
            )

    return run


# The fast engine's variants: FastWaveGlow.from_model's fold_upsampler ("fast_budget": a byte
# budget, --fold-budget-mb; as many layers folded as fit).
FAST_VARIANTS = ("fast_unfolded", "fast", "fast_budget")


def fold_setting(key: str, args: argparse.Namespace) -> bool | int:
    """``fold_upsampler`` of a fast variant."""
    return {"fast_unfolded": False, "fast": True}.get(key, int(args.fold_budget_mb * 2**20))


def build_variant(key: str, model: WaveGlow, args: argparse.Namespace) -> tuple[Any, str | None]:
    """The object variant ``key`` runs for ``model``, or (None, why not)."""
    if key == "waveflow":
        return model, None
    if key == "waveflow_nown":
        return folded_copy(model), None
    if key == "nvidia":
        return nvidia_model(model)
    cfg = model.config
    if cfg.conditioning != "upsample" or cfg.wavenet.separable:
        return None, "the fast engine compiles WaveGlow's architecture, not the compact family"
    return FastWaveGlow.from_model(model, fold_upsampler=fold_setting(key, args)), None


def memory_probe(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: one variant's resident memory (MB) for one mel length.

    The source model is built (random weights, or ``--nvidia-checkpoint``), the variant is built
    from it, and the source is dropped unless the variant is the model itself (the C heap is
    trimmed, see :func:`_malloc_trim`); then ``rss_after_build_mb``, and ``peak_rss_mb``: the peak
    RSS of one ``infer`` (VmHWM reset just before it), i.e. the variant's weights and everything
    its synthesis allocates. ``build_peak_mb`` is the process's peak before that reset (source
    model and build included). The same process start (``rss_at_start_mb``: Python, torch) is in
    every figure.
    """
    torch.set_num_threads(args.threads)
    key, preset_name, seconds = args.memory_probe
    seconds = float(seconds)
    base = status_mb("VmRSS")
    model = _source_model(preset_name, args)
    cfg = model.config
    variant, why = build_variant(key, model, args)
    if variant is None:
        return {"skipped": why}
    if variant is not model:
        del model
    import gc

    gc.collect()
    trimmed = _malloc_trim()
    frames = max(1, round(seconds * SAMPLE_RATE / cfg.hop_length))
    mel = torch.randn(1, cfg.n_mels, frames, generator=torch.Generator().manual_seed(args.seed)) * 1.5 - 5.0
    fn = _infer_fn(key, variant, mel, args.sigma, args.seed)
    build_peak = status_mb("VmHWM")
    built = status_mb("VmRSS")
    reset = reset_peak_rss()
    fn()
    peak = status_mb("VmHWM")
    return {
        "frames": frames,
        "rss_at_start_mb": base,
        "rss_after_build_mb": built,
        "peak_rss_mb": peak,
        "infer_mb": peak - built,
        "build_peak_mb": build_peak,
        "peak_was_reset": reset,
        "heap_trimmed": trimmed,
    }


def _malloc_trim() -> bool:
    """Hand the C heap's free pages back to the OS (glibc), so that RSS counts live memory only:
    what the build freed (the source model, float64 temporaries) does not stay resident."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def memory_probes(
    keys: list[str], preset_name: str, seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    """:func:`memory_probe` of every variant, each in its own fresh process."""
    out = {}
    for key in keys:
        cmd = [sys.executable, __file__, "--memory-probe", key, preset_name, str(seconds)]
        cmd += ["--threads", str(args.threads), "--seed", str(args.seed), "--sigma", str(args.sigma)]
        cmd += ["--fold-budget-mb", str(args.fold_budget_mb)]
        if args.nvidia_checkpoint:
            cmd += ["--nvidia-checkpoint", args.nvidia_checkpoint]
        result = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        if result.returncode != 0:
            out[key] = {"failed": result.stderr[-2000:]}
        else:
            out[key] = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"    memory {key} {seconds:g}s: {out[key].get('peak_rss_mb', out[key])}", file=sys.stderr)
    return out


def _child_env() -> dict[str, str]:
    """This environment, with the folder this process imported ``waveflow`` from on the path."""
    import waveflow

    env = dict(os.environ)
    root = str(Path(waveflow.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _source_model(preset_name: str, args: argparse.Namespace) -> WaveGlow:
    """The model a preset's variants are built from: NVIDIA's weights if given, else random ones."""
    if args.nvidia_checkpoint and preset_name == "waveglow_ljspeech":
        from waveflow.interop.nvidia import load_nvidia_checkpoint

        cfg, state = load_nvidia_checkpoint(args.nvidia_checkpoint)
        model = WaveGlow.from_config(cfg)
        if not cfg.weight_norm:
            model.remove_weight_norm()
        model.load_state_dict(state)
        return model.eval()
    return build_model(model_config(preset_name), args.seed)


# -- the benchmark ------------------------------------------------------------------------------
def bench_case(
    name: str,
    variants: dict[str, Callable[[], torch.Tensor]],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Run every variant ``warmup`` times, then ``repeats`` rounds of all variants in turn."""
    outputs = {}
    for key, fn in variants.items():
        for _ in range(args.warmup):
            outputs[key] = fn()
        if key not in outputs:
            outputs[key] = fn()
    walls, others = time_interleaved(variants, args.repeats)
    base_key = next((k for k in ("waveflow", "nvidia") if k in outputs), None)
    base = outputs.get(base_key)
    result = {}
    for key in variants:
        entry = summarize(walls[key], others[key])
        out = outputs[key]
        if base is not None and out is not None:
            entry["max_abs_diff"] = float((out.float() - base.float()).abs().max())
            entry["max_abs_diff_vs"] = base_key
            entry["finite"] = bool(torch.isfinite(out).all())
        result[key] = entry
    print(f"  {name}: " + ", ".join(f"{k} {v['median_s']:.3f}s" for k, v in result.items()), file=sys.stderr)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "machine": {
            "cpu": _cpu_name(),
            "logical_cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "matmul_gflops_start": matmul_gflops(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "cases": [],
        "baselines": [],
    }
    for preset_name in args.presets:
        model = _source_model(preset_name, args)
        cfg = model.config
        print(f"{preset_name}: building variants", file=sys.stderr)
        built: dict[str, Any] = {"waveflow": model}
        build_s: dict[str, float] = {}
        notes: dict[str, str] = {}
        for key in args.variants:
            if key == "waveflow":
                continue
            t = time.perf_counter()
            obj, why = build_variant(key, model, args)
            if obj is None:
                notes[key] = why
            else:
                built[key] = obj
                build_s[key] = time.perf_counter() - t
        compact = cfg.conditioning != "upsample" or cfg.wavenet.separable
        hop = cfg.hop_length
        for seconds in args.seconds:
            frames = max(1, round(seconds * SAMPLE_RATE / hop))
            for batch in args.batch_sizes:
                mel = torch.randn(
                    batch, cfg.n_mels, frames, generator=torch.Generator().manual_seed(args.seed)
                )
                mel = mel * 1.5 - 5.0  # log-magnitude scale of real mels
                variants: dict[str, Callable[[], torch.Tensor]] = {}
                for key in args.variants:
                    if key not in built:
                        continue
                    variants[key] = _infer_fn(key, built[key], mel, args.sigma, args.seed)
                case_name = f"{preset_name} {frames} frames x{batch}"
                timings = bench_case(case_name, variants, args)
                audio_seconds = batch * frames * hop / SAMPLE_RATE
                ref_flops = flops.reference_flops(cfg, frames, batch)["total"]
                for key, entry in timings.items():
                    entry["rtf"] = entry["median_s"] / audio_seconds
                    entry["khz"] = audio_seconds * SAMPLE_RATE / entry["median_s"] / 1e3
                    entry["gflops_reference_count"] = ref_flops / entry["median_s"] / 1e9
                    if key.startswith("fast"):
                        fold = fold_setting(key, args)
                        executed = flops.fast_flops(cfg, frames, batch, fold_upsampler=fold)["total"]
                        entry["gflops_executed"] = executed / entry["median_s"] / 1e9
                        entry["build_s"] = build_s[key]
                    if "nvidia" in timings:
                        entry["speedup_vs_nvidia"] = timings["nvidia"]["median_s"] / entry["median_s"]
                        entry["speedup_vs_nvidia_min"] = timings["nvidia"]["min_s"] / entry["min_s"]
                if args.memory and batch == 1:
                    memory = memory_probes(list(variants), preset_name, seconds, args)
                    nvidia_peak = memory.get("nvidia", {}).get("peak_rss_mb")
                    for key, entry in timings.items():
                        entry["memory"] = memory[key]
                        peak = memory[key].get("peak_rss_mb")
                        if nvidia_peak is not None and peak is not None:
                            entry["peak_rss_minus_nvidia_mb"] = peak - nvidia_peak
                report["cases"].append(
                    {
                        "preset": preset_name,
                        "frames": frames,
                        "batch": batch,
                        "audio_seconds": audio_seconds,
                        "reference_gflop_per_audio_second": ref_flops / audio_seconds / 1e9,
                        "fast_gflop_per_audio_second": None
                        if compact
                        else flops.fast_flops(cfg, frames, batch)["total"] / audio_seconds / 1e9,
                        "variants": timings,
                        "notes": notes,
                    }
                )
        if "fast" in built:
            report.setdefault("folded_weight_bytes", {})[preset_name] = folded_cond_bytes(model)
        del built, model
    for seconds in args.seconds if args.griffin_lim else []:
        frames = max(1, round(seconds * SAMPLE_RATE / 256))
        mel = torch.randn(1, 80, frames, generator=torch.Generator().manual_seed(args.seed)) * 1.5 - 5.0
        gl = griffin_lim_run(mel, 256, args.griffin_lim_iters)
        if gl is None:
            report["baselines"].append({"name": "griffin_lim", "skipped": "librosa not installed"})
            continue
        entry = bench_case(f"griffin_lim {frames} frames", {"griffin_lim": gl}, args)["griffin_lim"]
        entry["rtf"] = entry["median_s"] / (frames * 256 / SAMPLE_RATE)
        entry["khz"] = frames * 256 / entry["median_s"] / 1e3
        report["baselines"].append(
            {"name": "griffin_lim", "frames": frames, "iterations": args.griffin_lim_iters, **entry}
        )
    if args.wavenet_frames > 0:
        print(f"wavenet: generating {args.wavenet_frames * 256} samples", file=sys.stderr)
        report["baselines"].append(
            {"name": "wavenet", **wavenet_seconds_per_second(args.wavenet_frames, args.wavenet_size, 256, 80)}
        )
    machine = report["machine"]
    machine["matmul_gflops_end"] = matmul_gflops()
    peak = max(machine["matmul_gflops_start"], machine["matmul_gflops_end"])
    machine["matmul_gflops"] = peak
    for case in report["cases"]:
        for entry in case["variants"].values():
            entry["fraction_of_matmul_peak"] = entry["gflops_reference_count"] / peak
            if "gflops_executed" in entry:
                entry["executed_fraction_of_matmul_peak"] = entry["gflops_executed"] / peak
    wavenet = next((b for b in report["baselines"] if b.get("name") == "wavenet" and "rtf" in b), None)
    if wavenet is not None:
        for case in report["cases"]:
            for entry in case["variants"].values():
                entry["speedup_vs_wavenet"] = wavenet["rtf"] / entry["rtf"]
    machine["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _infer_fn(key: str, model: Any, mel: torch.Tensor, sigma: float, seed: int) -> Callable[[], torch.Tensor]:
    """``() -> audio`` for one variant; every variant draws the same noise (NVIDIA's draw order)."""
    if key == "nvidia":

        def run_nvidia() -> torch.Tensor:
            torch.manual_seed(seed)
            with torch.no_grad(), cpu_cuda_tensors():
                return model.infer(mel, sigma=sigma)

        return run_nvidia

    def run_waveflow() -> torch.Tensor:
        with torch.inference_mode():
            return model.infer(mel, sigma=sigma, generator=torch.Generator().manual_seed(seed))

    return run_waveflow


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


ALL_VARIANTS = ("nvidia", "waveflow", "waveflow_nown", *FAST_VARIANTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["waveglow_ljspeech", "waveglow_small"],
        help="builders in waveflow.presets, or JSON files holding a ModelConfig dict",
    )
    parser.add_argument(
        "--seconds", nargs="+", type=float, default=[1.0, 4.0], help="mel lengths, seconds of audio"
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1])
    parser.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS), choices=ALL_VARIANTS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=physical_cores(), help="torch threads (default: physical cores)"
    )
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument(
        "--fold-budget-mb",
        type=float,
        default=400.0,
        help="fast_budget: MiB of folded conditioning weight (FastWaveGlow fold_upsampler=<bytes>)",
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--nvidia-checkpoint", help="real weights for waveglow_ljspeech (NVIDIA .pt)")
    parser.add_argument("--no-griffin-lim", dest="griffin_lim", action="store_false")
    parser.add_argument("--griffin-lim-iters", type=int, default=32)
    parser.add_argument(
        "--wavenet-frames", type=int, default=2, help="frames the WaveNet generates (0: skip)"
    )
    parser.add_argument("--wavenet-size", choices=sorted(WAVENET_CONFIGS), default="ljspeech")
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the peak-RSS subprocesses (one fresh process per variant and mel length, batch 1)",
    )
    parser.add_argument(
        "--memory-probe", nargs=3, metavar=("VARIANT", "PRESET", "SECONDS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here (default: stdout)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.memory_probe:
        print(json.dumps(memory_probe(args)))
        return 0
    write_report(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
