"""The README's performance table, rendered from the JSON of ``bench_inference.py`` and ``bench_train.py``.

    python tools/perf_table.py bench_inference.json [bench_train.json] > table.md

Every figure is a median over the benchmark's interleaved repeats; ratios compare variants timed in
the same rounds, so they survive a noisy machine better than the absolute times do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

LABELS = {
    "nvidia": "NVIDIA glow.py (reference)",
    "waveflow": "waveflow, weight norm as trained",
    "waveflow_nown": "waveflow, weight norm folded",
    "fast_unfolded": "waveflow fast engine, upsampler unfolded",
    "fast": "waveflow fast engine, upsampler folded",
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def inference_rows(report: dict[str, Any], seconds: float | None) -> list[str]:
    """One row per (preset, variant) at the mel length closest to ``seconds`` (batch 1)."""
    rows = []
    by_preset: dict[str, list[dict[str, Any]]] = {}
    for case in report["cases"]:
        if case["batch"] == 1:
            by_preset.setdefault(case["preset"], []).append(case)
    for preset, cases in by_preset.items():
        target = seconds if seconds is not None else max(c["audio_seconds"] for c in cases)
        case = min(cases, key=lambda c: abs(c["audio_seconds"] - target))
        for key, entry in case["variants"].items():
            rows.append(
                f"| `{preset}` | {LABELS.get(key, key)} | {_fmt(entry['rtf'], 3)} | {_fmt(entry['khz'], 1)} "
                f"| {_fmt(entry.get('speedup_vs_nvidia'))} | {_fmt(entry.get('speedup_vs_wavenet'), 0)} "
                f"| {_fmt(100 * entry['fraction_of_matmul_peak'], 0)} % |"
            )
    for base in report.get("baselines", []):
        if "rtf" not in base:
            continue
        if base["name"] == "griffin_lim":
            name = f"Griffin-Lim (librosa, {base['iterations']} iterations), {base['frames']} frames"
        else:
            name = f"autoregressive WaveNet (wavenet-vocoder 0.1.1, {base['config']} config)"
        rows.append(f"| – | {name} | {_fmt(base['rtf'], 3)} | {_fmt(base['khz'], 1)} | – | – | – |")
    return rows


def render(inference: dict[str, Any], train: dict[str, Any] | None, seconds: float | None) -> str:
    machine = inference["machine"]
    lines = [
        f"{machine['cpu']}, {machine['threads']} torch thread(s), torch {machine['torch']}; "
        f"fp32 matmul peak measured in the run: {machine['matmul_gflops']:.0f} GFLOP/s.",
        "",
        "| preset | synthesis | s per s of audio | kHz | × NVIDIA | × WaveNet | reference FLOPs / peak |",
        "|---|---|---:|---:|---:|---:|---:|",
        *inference_rows(inference, seconds),
    ]
    if train is not None:
        s = train["settings"]
        lines += [
            "",
            f"Training step (forward + backward, `{s['preset']}`, batch {s['batch_size']} x {s['segment']} samples, "
            f"{train['machine']['threads']} thread(s)):",
            "",
            "| training | samples/s | × NVIDIA | pairwise × NVIDIA: median (range) | peak step memory (MB) |",
            "|---|---:|---:|---:|---:|",
        ]
        reference = train["variants"].get("nvidia", {}).get("times_s")
        for key, entry in train["variants"].items():
            memory = entry.get("memory", {}).get("step_mb")
            label = {
                "waveflow": "waveflow (`WaveGlow.forward` + `losses.nll`)",
                "waveflow_direct": "waveflow, dilated convs direct (no Winograd)",
            }.get(key, LABELS.get(key, key))
            pairwise = "–"
            if reference and key != "nvidia":
                # repeat i timed NVIDIA and this variant back to back
                ratios = [n / w for n, w in zip(reference, entry["times_s"], strict=True)]
                pairwise = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
            lines.append(
                f"| {label} | {_fmt(entry['samples_per_s'], 0)} "
                f"| {_fmt(entry.get('speedup_vs_nvidia'))} | {pairwise} | {_fmt(memory, 0)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inference", type=Path, help="JSON from tools/bench_inference.py")
    parser.add_argument("train", type=Path, nargs="?", help="JSON from tools/bench_train.py")
    parser.add_argument("--seconds", type=float, help="mel length to show (default: the longest benchmarked)")
    args = parser.parse_args(argv)
    inference = json.loads(args.inference.read_text())
    train = json.loads(args.train.read_text()) if args.train else None
    sys.stdout.write(render(inference, train, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
