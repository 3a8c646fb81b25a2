"""Training speed: samples/s and peak memory of one forward + backward, waveflow against NVIDIA.

A step is what the training loop does with one batch, minus the optimizer: the flow's forward on
``(B, segment)`` audio and its mel, the loss, and the backward pass (gradients zeroed before, not
timed). ``waveflow`` runs :class:`WaveGlow` with ``losses.nll``; ``nvidia`` runs NVIDIA/waveglow's
``glow.WaveGlow`` with its ``WaveGlowLoss`` on the same weights (``to_nvidia_state_dict``), both
with weight norm, as in training; ``waveflow_direct`` is ``waveflow`` with its dilated convolutions
computed directly (``F.conv1d``) instead of by Winograd's F(4, 3), to show what that step buys. The two losses differ by a constant and give the same
gradients, which the run checks (``max_grad_diff`` on the upsampler and the first ``cond_layer``).
Variants run interleaved, with other processes' CPU time recorded (see ``bench_inference.py``).

Peak memory is measured per variant in a fresh subprocess (CPU: peak RSS minus the RSS after the
model is built, from `/proc/self/status`), so variants cannot inflate each other.

    python tools/bench_train.py --out bench_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from bench_inference import build_model, matmul_gflops, physical_cores, summarize, time_interleaved
from bench_report import reset_peak_rss, status_mb, write_report

from waveflow import losses, presets
from waveflow.model import WaveGlow
from waveflow.nn import WaveNet
from waveflow.nn.wavenet import WINOGRAD_MIN_DILATION

VARIANTS = ("nvidia", "waveflow", "waveflow_direct")
DEFAULT_VARIANTS = ("nvidia", "waveflow")


def nvidia_training_model(model: WaveGlow) -> tuple[torch.nn.Module | None, Any, str | None]:
    """(NVIDIA's ``glow.WaveGlow`` with ``model``'s weights, its loss) or (None, None, why not)."""
    try:
        from waveglow import glow
    except ImportError:
        return None, None, "not installed: pip install --no-deps waveglow==22.12.28"
    from waveflow.interop.nvidia import to_nvidia_state_dict

    cfg = model.config
    try:
        state = to_nvidia_state_dict(model)
    except ValueError as exc:
        return None, None, str(exc)
    wn = cfg.wavenet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = glow.WaveGlow(
            n_mel_channels=cfg.n_mels,
            n_flows=cfg.n_flows,
            n_group=cfg.n_group,
            n_early_every=cfg.n_early_every,
            n_early_size=cfg.n_early_size,
            WN_config={"n_layers": wn.n_layers, "n_channels": wn.n_channels, "kernel_size": wn.kernel_size},
        )
    ref.load_state_dict(state)
    return ref.train(), glow.WaveGlowLoss(sigma=1.0), None


def make_batch(cfg, batch_size: int, segment: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``audio`` ``(B, segment)`` in [-1, 1] and a mel ``(B, n_mels, segment // hop + 1)`` (mel2samp's count)."""
    gen = torch.Generator().manual_seed(seed)
    audio = (torch.rand(batch_size, segment, generator=gen) * 2 - 1) * 0.3
    mel = torch.randn(batch_size, cfg.n_mels, segment // cfg.hop_length + 1, generator=gen) * 1.5 - 5.0
    return audio, mel


def step_fn(variant: str, model: WaveGlow, audio: torch.Tensor, mel: torch.Tensor):
    """``() -> (loss, params)`` running one forward + backward of ``variant``."""
    if variant == "nvidia":
        ref, criterion, why = nvidia_training_model(model)
        if ref is None:
            return None, why

        def run_nvidia():
            ref.zero_grad(set_to_none=True)
            loss = criterion(ref((mel, audio)))
            loss.backward()
            return loss.detach(), ref

        return run_nvidia, None

    model.train()
    # waveflow_direct: every dilated conv through F.conv1d (no Winograd), to show that step's share.
    min_dilation = None if variant == "waveflow_direct" else WINOGRAD_MIN_DILATION
    wavenets = [m for m in model.modules() if isinstance(m, WaveNet)]

    def run_waveflow():
        for net in wavenets:
            if net.kernel_size == 3:
                net.winograd_min_dilation = min_dilation
        model.zero_grad(set_to_none=True)
        z, logdet = model(audio, mel)
        loss = losses.nll(z, logdet).mean()
        loss.backward()
        return loss.detach(), model

    return run_waveflow, None


def _grads(variant: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Gradients of a few weights, by NVIDIA's names, as effective (weight-norm) tensors."""
    named = dict(module.named_parameters())
    if variant == "nvidia":
        return {"upsample": named["upsample.weight"].grad, "cond_g": named["WN.0.cond_layer.weight_g"].grad}
    return {
        "upsample": named["upsample.conv.weight"].grad,
        "cond_g": named[
            "flow.steps.0.coupling.conditioner.cond_layer.parametrizations.weight.original0"
        ].grad,
    }


def memory_probe(args: argparse.Namespace) -> dict[str, Any]:
    """Run in a fresh process: RSS after building, and the peak RSS of one step on top of it (MB)."""
    torch.set_num_threads(args.threads)
    cfg = getattr(presets, args.preset)()
    model = build_model(cfg, args.seed)
    audio, mel = make_batch(cfg, args.batch_size, args.segment, args.seed)
    fn, why = step_fn(args.memory_probe, model, audio, mel)
    if fn is None:
        return {"skipped": why}
    if args.memory_probe == "nvidia":
        del model  # the reference holds its own copy of the weights
    base = status_mb("VmRSS")
    reset = reset_peak_rss()
    fn()
    peak = status_mb("VmHWM")
    return {"rss_after_build_mb": base, "peak_rss_mb": peak, "step_mb": peak - base, "peak_was_reset": reset}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    cfg = getattr(presets, args.preset)()
    model = build_model(cfg, args.seed)
    audio, mel = make_batch(cfg, args.batch_size, args.segment, args.seed)
    fns, notes = {}, {}
    for variant in args.variants:
        fn, why = step_fn(variant, model, audio, mel)
        if fn is None:
            notes[variant] = why
        else:
            fns[variant] = fn
    report: dict[str, Any] = {
        "machine": {
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "matmul_gflops": matmul_gflops(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "memory_probe")},
        "notes": notes,
        "variants": {},
    }
    grads, losses_ = {}, {}
    for variant, fn in fns.items():
        for _ in range(max(args.warmup, 1)):
            loss, module = fn()
        losses_[variant] = float(loss)
        grads[variant] = {k: v.clone() for k, v in _grads(variant, module).items()}
    walls, others = time_interleaved(
        fns,
        args.repeats,
        lambda walls: print("  " + ", ".join(f"{v} {w[-1]:.2f}s" for v, w in walls.items()), file=sys.stderr),
    )
    samples = args.batch_size * args.segment
    for variant in fns:
        entry = summarize(walls[variant], others[variant])
        entry["samples_per_s"] = samples / entry["median_s"]
        entry["loss"] = losses_[variant]
        if "nvidia" in fns:
            entry["speedup_vs_nvidia"] = statistics.median(walls["nvidia"]) / entry["median_s"]
            # Each repeat times NVIDIA and this variant back to back: the spread of the pairwise
            # ratios shows how much the machine's load moved the figure.
            pairs = [n / w for n, w in zip(walls["nvidia"], walls[variant], strict=True)]
            entry["pair_speedups"] = {
                "median": statistics.median(pairs),
                "min": min(pairs),
                "max": max(pairs),
            }
            entry["max_grad_diff"] = max(
                float((grads[variant][k] - grads["nvidia"][k]).abs().max()) for k in grads[variant]
            )
        report["variants"][variant] = entry
    if args.memory:
        for variant in fns:
            cmd = [sys.executable, __file__, "--memory-probe", variant, "--preset", args.preset]
            cmd += ["--batch-size", str(args.batch_size), "--segment", str(args.segment)]
            cmd += ["--threads", str(args.threads), "--seed", str(args.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_child_env())
            report["variants"][variant]["memory"] = json.loads(out.stdout)
    return report


def _child_env() -> dict[str, str]:
    """This environment, with the folder this process imported ``waveflow`` from on the path."""
    import waveflow

    env = dict(os.environ)
    root = str(Path(waveflow.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="waveglow_ljspeech")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--segment", type=int, default=16000, help="audio samples per item")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses"
    )
    parser.add_argument("--memory-probe", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if getattr(presets, args.preset, None) is None:
        parser.error(f"unknown preset {args.preset!r}")
    if args.segment % getattr(presets, args.preset)().n_group:
        parser.error(f"--segment {args.segment} must be a multiple of n_group")
    if args.memory_probe:
        print(json.dumps(memory_probe(args)))
        return 0
    write_report(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
