"""Speed against memory for the fast engine's partial upsampler fold (``fold_upsampler=<bytes>``).

NVIDIA's code and the fast engine at several fold budgets (MiB of folded conditioning weight;
``0`` is the unfolded engine, ``full`` the whole fold) decode the same mel with the same noise,
interleaved (A B C A B C ...), per mel length: median seconds, speedup over NVIDIA (ratio of
medians, and the median/min/max of the per-round ratios), other processes' CPU load during the
calls (``/proc/stat``), max abs difference from NVIDIA's audio, and the folded layers and bytes.
With ``--memory``, each variant's peak RSS per mel length is measured in a fresh process
(``bench_inference.py --memory-probe``).

    python tools/bench_fold_budget.py --budgets 0 200 400 480 960 full --out tools/results/bench_fold_budget.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch
from bench_inference import (
    SAMPLE_RATE,
    _infer_fn,
    build_model,
    memory_probes,
    model_config,
    nvidia_model,
    summarize,
    time_interleaved,
)
from bench_report import write_report

from waveflow.infer.fast import FastWaveGlow, folded_cond_bytes, folded_layers


def fold_of(budget: str) -> bool | int:
    """``fold_upsampler`` for a budget in MiB, or ``'full'``."""
    return True if budget == "full" else int(float(budget) * 2**20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="waveglow_ljspeech")
    parser.add_argument("--seconds", nargs="+", type=float, default=[1.0, 2.5])
    parser.add_argument("--budgets", nargs="+", default=["0", "400", "full"], help="MiB, or 'full'")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--memory", action="store_true", help="peak RSS per variant in fresh processes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = model_config(args.preset)
    model = build_model(cfg, args.seed)
    ref, why = nvidia_model(model)
    if ref is None:
        raise SystemExit(f"NVIDIA's code is needed: {why}")
    variants = {"nvidia": ref}
    for budget in args.budgets:
        variants[f"fold_{budget}"] = FastWaveGlow.from_model(model, fold_upsampler=fold_of(budget))
    report = {
        "settings": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "threads": torch.get_num_threads(),
        "folded_cond_bytes_full": folded_cond_bytes(model),
        "cases": [],
    }
    for seconds in args.seconds:
        frames = max(1, round(seconds * SAMPLE_RATE / cfg.hop_length))
        mel = (
            torch.randn(1, cfg.n_mels, frames, generator=torch.Generator().manual_seed(args.seed)) * 1.5 - 5.0
        )
        fns = {
            k: _infer_fn(k if k == "nvidia" else "fast", v, mel, args.sigma, args.seed)
            for k, v in variants.items()
        }
        outputs = {}
        for key, fn in fns.items():
            for _ in range(max(args.warmup, 1)):
                outputs[key] = fn()
        walls, others = time_interleaved(fns, args.repeats)
        case = {"frames": frames, "audio_seconds": frames * cfg.hop_length / SAMPLE_RATE, "variants": {}}
        for key in fns:
            entry = summarize(walls[key], others[key])
            pairs = [n / w for n, w in zip(walls["nvidia"], walls[key])]
            entry["speedup_vs_nvidia"] = statistics.median(walls["nvidia"]) / entry["median_s"]
            entry["pairwise_speedup_vs_nvidia"] = {
                "median": statistics.median(pairs),
                "min": min(pairs),
                "max": max(pairs),
            }
            entry["max_abs_diff_vs_nvidia"] = float((outputs[key] - outputs["nvidia"]).abs().max())
            if key != "nvidia":
                budget = key[len("fold_") :]
                n = folded_layers(model, fold_of(budget))
                entry["folded_layers"] = n
                entry["folded_mib"] = (
                    n * folded_cond_bytes(model) / (cfg.n_flows * cfg.wavenet.n_layers) / 2**20
                )
            case["variants"][key] = entry
        if args.memory:
            for key in fns:
                probe_args = copy.copy(args)
                probe_args.nvidia_checkpoint = None
                if key == "nvidia":
                    mem = memory_probes(["nvidia"], args.preset, seconds, _with_budget(probe_args, 0))[
                        "nvidia"
                    ]
                else:
                    budget = key[len("fold_") :]
                    name = "fast" if budget == "full" else "fast_budget"
                    mem = memory_probes([name], args.preset, seconds, _with_budget(probe_args, budget))[name]
                case["variants"][key]["memory"] = mem
            nv = case["variants"]["nvidia"]["memory"].get("peak_rss_mb")
            for entry in case["variants"].values():
                peak = entry["memory"].get("peak_rss_mb")
                if nv is not None and peak is not None:
                    entry["peak_rss_minus_nvidia_mb"] = peak - nv
        report["cases"].append(case)
        print(
            f"{frames} frames: "
            + ", ".join(
                f"{k} {v['median_s']:.3f}s x{v['speedup_vs_nvidia']:.3f}" for k, v in case["variants"].items()
            ),
            file=sys.stderr,
        )
    write_report(report, args.out)
    return 0


def _with_budget(args: argparse.Namespace, budget: str | int) -> argparse.Namespace:
    args.fold_budget_mb = 0.0 if budget == "full" else float(budget)
    return args


if __name__ == "__main__":
    raise SystemExit(main())
