"""Learning curves: objective metrics of a training run's checkpoints against its CPU time.

For every run directory (``label=DIR``), the checkpoints its ``train_log.jsonl`` recorded (with the
run's cumulative CPU seconds at that step) are loaded in turn; each vocodes the reference clips
from their own mels (seeded noise, ``--sigma``) and is scored with STOI, wideband PESQ, the
multi-resolution STFT distance and the mel L1 (``waveflow.eval.metrics``). Griffin-Lim on the same
mels is scored once as the reference line. The fp32 matmul peak is measured at the start and the
end, since machines of one kind differ by up to 2.5x in speed.

    python tools/learning_curves.py --run compact=/tmp/runs/compact --run small=/tmp/runs/small \\
        --filelist /tmp/speech_corpus/eval_filelist.txt --out tools/results/learning_curves.json \\
        --plot tools/results/learning_curves.png

JSON: ``{"machine", "settings", "griffin_lim": {metric: mean}, "runs": {label: [{"step",
"cpu_minutes", "checkpoint", metric: mean, ...}, ...]}, "extra_curves": {label: [...]}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import _cpu_name, matmul_gflops  # noqa: E402
from bench_report import write_report  # noqa: E402

from waveflow import Vocoder  # noqa: E402
from waveflow.audio.io import load_audio  # noqa: E402
from waveflow.data import read_filelist  # noqa: E402
from waveflow.eval import metrics  # noqa: E402
from waveflow.eval.griffin_lim import griffin_lim  # noqa: E402

METRICS = ("stoi", "pesq_wb", "mrstft", "mel_l1")


def score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> dict[str, float]:
    reference, estimate = metrics.align(reference, estimate)
    return {
        "stoi": metrics.stoi(reference, estimate, sample_rate),
        "pesq_wb": metrics.pesq_wb(reference, estimate, sample_rate),
        "mrstft": metrics.multi_resolution_stft_distance(reference, estimate).total,
        "mel_l1": metrics.mel_l1(reference, estimate, sample_rate),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: metrics.finite_mean([r[k] for r in rows])[0] for k in METRICS}


def checkpoints_of(run_dir: Path) -> list[dict[str, Any]]:
    """``[{"step", "cpu_s", "path"}]`` of the periodic checkpoints still on disk, in step order."""
    found: dict[int, dict[str, Any]] = {}
    for line in (run_dir / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "checkpoint" and record.get("cpu_s") is not None:
            if Path(record["path"]).is_file() and record.get("reason") != "best":
                found[record["step"]] = {
                    "step": record["step"],
                    "cpu_s": record["cpu_s"],
                    "path": record["path"],
                }
    return [found[k] for k in sorted(found)]


def pick(points: list[dict[str, Any]], every_minutes: float | None) -> list[dict[str, Any]]:
    """At most one checkpoint per ``every_minutes`` of CPU time (the first past each mark), plus the last."""
    if every_minutes is None or not points:
        return points
    chosen, mark = [], every_minutes
    for p in points:
        if p["cpu_s"] / 60 >= mark:
            chosen.append(p)
            while mark <= p["cpu_s"] / 60:
                mark += every_minutes
    if points[-1] not in chosen:
        chosen.append(points[-1])
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", action="append", default=[], metavar="LABEL=DIR", help="a training run directory"
    )
    parser.add_argument("--filelist", required=True, help="reference clips, one path per line")
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--every-minutes", type=float, default=None, help="evaluate one checkpoint per this many CPU-minutes"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--griffin-lim-iters", type=int, default=32)
    parser.add_argument(
        "--extra-curves",
        action="append",
        default=[],
        help="JSON {label: [points]} of another system's curve (e.g. tools/peer_hifigan.py evaluate)",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="an earlier report: its scored checkpoints are taken from there instead of re-scored",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the curves (needs matplotlib)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    references = read_filelist(args.filelist)
    report: dict[str, Any] = {
        "machine": {"cpu": _cpu_name(), "threads": args.threads, "matmul_gflops_start": matmul_gflops()},
        "settings": {
            "filelist": str(args.filelist),
            "num_clips": len(references),
            "sigma": args.sigma,
            "seed": args.seed,
            "griffin_lim_iters": args.griffin_lim_iters,
        },
        "runs": {},
    }
    for path in args.extra_curves:
        report.setdefault("extra_curves", {}).update(json.loads(Path(path).read_text()))
    done: dict[str, dict[str, Any]] = {}
    old: dict[str, Any] = {}
    if args.reuse is not None and args.reuse.is_file():
        old = json.loads(args.reuse.read_text())
        done = {p["checkpoint"]: p for curve in old["runs"].values() for p in curve}
    # Griffin-Lim is scored with the first checkpoint scored here; with everything reused, it comes from the old report.
    started = time.perf_counter()
    gl_rows: list[dict[str, float]] = []
    for label_dir in args.run:
        label, _, run_dir = label_dir.partition("=")
        curve = []
        for point in pick(checkpoints_of(Path(run_dir)), args.every_minutes):
            if point["path"] in done:
                curve.append(done[point["path"]])
                continue
            vocoder = Vocoder.from_checkpoint(point["path"], device="cpu")
            rows = []
            for index, path in enumerate(references):
                audio, _ = load_audio(path, vocoder.sample_rate)
                mel = vocoder.mel(audio, vocoder.sample_rate)
                generator = torch.Generator().manual_seed(args.seed + index)
                generated, _ = vocoder(mel, sigma=args.sigma, generator=generator)
                estimate = generated[0].clamp(-1, 1).numpy()
                rows.append(score(audio, estimate, vocoder.sample_rate))
                if len(gl_rows) == index:  # Griffin-Lim once per clip, on the first checkpoint's mel
                    gl = griffin_lim(mel.numpy(), vocoder.mel_config, n_iter=args.griffin_lim_iters)
                    gl_rows.append(score(audio, gl, vocoder.sample_rate))
            entry = {
                "step": point["step"],
                "cpu_minutes": point["cpu_s"] / 60,
                "checkpoint": point["path"],
                **mean_scores(rows),
            }
            curve.append(entry)
            print(json.dumps({"run": label, **entry}), flush=True)
        report["runs"][label] = curve
        # The fp32 matmul rate each training session of the run measured at its start (runs from
        # before the trainer recorded it have none).
        starts = [
            json.loads(line)
            for line in (Path(run_dir) / "train_log.jsonl").read_text().splitlines()
            if '"start"' in line
        ]
        report.setdefault("training_matmul_gflops", {})[label] = [
            s.get("matmul_gflops") for s in starts if s.get("event") == "start"
        ]
    report["griffin_lim"] = mean_scores(gl_rows) if gl_rows else old.get("griffin_lim")
    report["machine"]["matmul_gflops_end"] = matmul_gflops()
    report["wall_s"] = time.perf_counter() - started
    write_report(report, args.out)
    if args.plot is not None:
        plot(report, args.plot)
    return 0


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {
        "stoi": "STOI (higher is better)",
        "pesq_wb": "PESQ-WB (higher is better)",
        "mrstft": "MR-STFT distance (lower is better)",
        "mel_l1": "mel L1 (lower is better)",
    }
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, metric in zip(axes.flat, METRICS):
        for label, curve in report["runs"].items():
            xs = [p["cpu_minutes"] for p in curve]
            ys = [p[metric] for p in curve]
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        gl = (report.get("griffin_lim") or {}).get(metric)
        if gl is not None and math.isfinite(gl):
            ax.axhline(gl, color="black", linestyle="--", linewidth=1, label="Griffin-Lim (32 it.)")
        for label, curve in (report.get("extra_curves") or {}).items():
            xs = [p["cpu_minutes"] for p in curve]
            ax.plot(
                xs,
                [p[metric] for p in curve],
                color="grey",
                linestyle=":",
                marker="s",
                markersize=3,
                label=label,
            )
        ax.set_xlabel("training CPU-minutes")
        ax.set_title(names[metric], fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    peak = report["machine"]["matmul_gflops_start"]
    fig.suptitle(
        f"{report['settings']['num_clips']} evaluation clips; machine fp32 matmul peak {peak:.0f} GFLOP/s",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
