"""GPU speed in one short run (< 5 minutes): synthesis kHz of the ``waveglow_ljspeech`` preset in
fp32 / tf32 / bf16 / fp16, and training samples/s with automatic mixed precision.

Without a CUDA device it prints a message and exits with status 0, so it can sit in any script.

Synthesis: ``WaveGlow.infer`` (weight norm folded) on a ``--seconds`` mel, weights and inputs cast
to the precision (the inverse 1x1 convolutions are still computed in float64 and cast); NVIDIA's
``glow.WaveGlow.infer`` on the same weights when PyPI ``waveglow==22.12.28`` is installed, in fp32
and fp16 (the ``.half()`` route of its ``inference.py --is_fp16``). ``fp32`` disables TF32 for
matmuls and cuDNN; ``tf32`` allows both (PyTorch's default for cuDNN convolutions). Every timed
region is bracketed by ``torch.cuda.synchronize()``; kHz = audio samples per second of compute.

Training: one forward + backward + Adam step on ``--train-batch`` segments of 16000 samples
(NVIDIA's recipe: 12), fp32 and under ``torch.autocast`` in bf16 and in fp16 (with a GradScaler),
as ``waveflow``'s training loop runs it; NVIDIA's class in fp32 and bf16 autocast for reference.
Peak memory is ``torch.cuda.max_memory_allocated`` per variant.

    python tools/gpu_bench.py --out gpu_bench.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_inference import build_model, folded_copy, nvidia_model
from bench_report import write_report

from waveflow import losses, presets

SAMPLE_RATE = 22050
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def cuda_time(fn, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn``, each bracketed by ``torch.cuda.synchronize()``."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def _stats(times: list[float], samples: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "times_s": times,
        "median_s": median,
        "min_s": min(times),
        "khz": samples / median / 1e3,
        "x_real_time": samples / SAMPLE_RATE / median,
    }


def bench_inference(args: argparse.Namespace, device: torch.device, deadline: float) -> dict[str, Any]:
    cfg = presets.waveglow_ljspeech()
    base = build_model(cfg, args.seed)
    folded = folded_copy(base)
    frames = round(args.seconds * SAMPLE_RATE / cfg.hop_length)
    gen = torch.Generator().manual_seed(args.seed)
    mel = torch.randn(args.batch, cfg.n_mels, frames, generator=gen) * 1.5 - 5.0
    samples = args.batch * frames * cfg.hop_length
    out: dict[str, Any] = {"frames": frames, "batch": args.batch}
    reference = None
    for name in ("fp32", "tf32", "bf16", "fp16"):
        if time.perf_counter() > deadline:
            out[name] = {"skipped": "time budget"}
            continue
        _set_tf32(name == "tf32")
        dtype = DTYPES[name]
        model = copy.deepcopy(folded).to(device=device, dtype=dtype)  # cast from the fp32 master
        m = mel.to(device=device, dtype=dtype)
        with torch.inference_mode():
            times = cuda_time(lambda model=model, m=m: model.infer(m, sigma=0.6), args.warmup, args.repeats)
            audio = model.infer(m, sigma=0.6, generator=torch.Generator(device).manual_seed(1)).float()
        entry = _stats(times, samples)
        if reference is None:
            reference = audio
        entry["max_abs_diff_vs_fp32"] = float((audio - reference).abs().max())
        entry["finite"] = bool(torch.isfinite(audio).all())
        out[name] = entry
        print(f"  waveflow {name}: {entry['khz']:.0f} kHz", file=sys.stderr)
        del model
    ref, why = nvidia_model(base)
    if ref is None:
        out["nvidia"] = {"skipped": why}
        return out
    for name in ("fp32", "fp16"):
        if time.perf_counter() > deadline:
            out[f"nvidia_{name}"] = {"skipped": "time budget"}
            continue
        _set_tf32(False)
        dtype = DTYPES[name]
        model = ref.to(device=device, dtype=dtype)  # fp32 first, then fp16: cast once from fp32
        m = mel.to(device=device, dtype=dtype)
        with torch.no_grad():
            times = cuda_time(lambda model=model, m=m: model.infer(m, sigma=0.6), args.warmup, args.repeats)
        out[f"nvidia_{name}"] = _stats(times, samples)
        print(f"  nvidia {name}: {out[f'nvidia_{name}']['khz']:.0f} kHz", file=sys.stderr)
        if hasattr(model, "convinv"):
            for conv in model.convinv:  # its infer caches W_inverse in the first dtype it sees
                conv.__dict__.pop("W_inverse", None)
    return out


def bench_training(args: argparse.Namespace, device: torch.device, deadline: float) -> dict[str, Any]:
    from bench_train import make_batch, nvidia_training_model

    cfg = presets.waveglow_ljspeech()
    model = build_model(cfg, args.seed).to(device).train()
    audio, mel = make_batch(cfg, args.train_batch, 16000, args.seed)
    audio, mel = audio.to(device), mel.to(device)
    samples = args.train_batch * 16000
    out: dict[str, Any] = {"batch": args.train_batch, "segment": 16000}
    _set_tf32(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    for name, amp in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if time.perf_counter() > deadline:
            out[name] = {"skipped": "time budget"}
            continue
        scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)

        def step(amp: torch.dtype | None = amp, scaler: torch.amp.GradScaler = scaler) -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
                z, logdet = model(audio, mel)
            loss = losses.nll(z.float(), logdet.float()).mean()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        torch.cuda.reset_peak_memory_stats()
        times = cuda_time(step, args.warmup, args.train_repeats)
        entry = _stats(times, samples)
        entry.pop("khz")
        entry.pop("x_real_time")
        entry["samples_per_s"] = samples / entry["median_s"]
        entry["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out[name] = entry
        print(f"  train {name}: {entry['samples_per_s']:.0f} samples/s", file=sys.stderr)
    ref, criterion, why = nvidia_training_model(model.cpu())
    if ref is None:
        out["nvidia"] = {"skipped": why}
        return out
    ref = ref.to(device)
    ref_optimizer = torch.optim.Adam(ref.parameters(), lr=1e-4)
    for name, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        if time.perf_counter() > deadline:
            out[f"nvidia_{name}"] = {"skipped": "time budget"}
            continue

        def ref_step(amp: torch.dtype | None = amp) -> None:
            ref_optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
                outputs = ref((mel, audio))
            z, log_s, log_det_w = outputs
            loss = criterion((z.float(), [s.float() for s in log_s], [d.float() for d in log_det_w]))
            loss.backward()
            ref_optimizer.step()

        torch.cuda.reset_peak_memory_stats()
        times = cuda_time(ref_step, args.warmup, args.train_repeats)
        entry = {"median_s": statistics.median(times), "samples_per_s": samples / statistics.median(times)}
        entry["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out[f"nvidia_{name}"] = entry
        print(f"  nvidia train {name}: {entry['samples_per_s']:.0f} samples/s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="mel length for synthesis, seconds of audio"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=12)
    parser.add_argument("--train-repeats", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=270.0, help="start no new measurement after this")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device available; nothing to measure.", file=sys.stderr)
        return 0
    start = time.perf_counter()
    deadline = start + args.budget_s
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    report = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_benchmark": True,
        "inference": bench_inference(args, device, deadline),
        "training": bench_training(args, device, deadline),
    }
    report["wall_s"] = time.perf_counter() - start
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
