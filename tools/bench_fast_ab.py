"""The fast engine before and after a change, interleaved: ``--old`` is another version of
``waveflow/infer/fast.py`` (e.g. ``git show HEAD:waveflow/infer/fast.py > /tmp/fast_old.py``),
loaded beside the current one and built from the same weights.

Both decode the same mel and noise with the upsampler folded and unfolded; reported per mel length
and variant: median seconds, the old/new ratio of medians and of each interleaved pair, other
processes' CPU load (``/proc/stat``), and each engine's max abs difference from the model's own
``decode``. The old file must import with the current
``waveflow``.

    python tools/bench_fast_ab.py --old /tmp/fast_old.py --out tools/results/bench_fast_ab.json
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import types
from pathlib import Path

import torch
from bench_inference import SAMPLE_RATE, build_model, model_config, summarize, time_interleaved
from bench_report import write_report

from waveflow.infer.fast import FastWaveGlow


def load_old(path: Path) -> types.ModuleType:
    """``path`` loaded as module ``fast_old`` (it imports the current ``waveflow``)."""
    spec = importlib.util.spec_from_file_location("fast_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--preset", default="waveglow_ljspeech")
    parser.add_argument("--seconds", nargs="+", type=float, default=[1.0, 2.5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    old = load_old(args.old)
    cfg = model_config(args.preset)
    model = build_model(cfg, args.seed)
    engines = {}
    for fold, tag in ((False, "unfolded"), (True, "folded")):
        engines[f"old_{tag}"] = old.FastWaveGlow.from_model(model, fold_upsampler=fold)
        engines[f"new_{tag}"] = FastWaveGlow.from_model(model, fold_upsampler=fold)
    report = {"settings": {k: str(v) for k, v in vars(args).items() if k != "out"}, "cases": []}
    for seconds in args.seconds:
        frames = max(1, round(seconds * SAMPLE_RATE / cfg.hop_length))
        gen = torch.Generator().manual_seed(args.seed)
        mel = torch.randn(1, cfg.n_mels, frames, generator=gen) * 1.5 - 5.0
        z = torch.randn(1, cfg.n_group, frames * cfg.hop_length // cfg.n_group, generator=gen) * 0.6
        with torch.no_grad():
            expected = model.decode(z, mel)
        fns = {k: (lambda e=e, z=z, mel=mel: e.decode(z, mel)) for k, e in engines.items()}
        diffs = {k: float((fn() - expected).abs().max()) for k, fn in fns.items()}
        walls, others = time_interleaved(fns, args.repeats)
        case = {"frames": frames, "variants": {}}
        for key in fns:
            entry = summarize(walls[key], others[key])
            entry["max_abs_diff_vs_model"] = diffs[key]
            if key.startswith("new_"):
                base = "old_" + key[4:]
                entry["speedup_vs_old"] = statistics.median(walls[base]) / entry["median_s"]
                entry["pairwise_speedup_vs_old"] = [o / n for o, n in zip(walls[base], walls[key])]
            case["variants"][key] = entry
        report["cases"].append(case)
        print(
            f"{frames} frames: "
            + ", ".join(f"{k} {v['median_s']:.3f}s" for k, v in case["variants"].items())
            + " | new/old: "
            + ", ".join(
                f"{k} {v['speedup_vs_old']:.3f}" for k, v in case["variants"].items() if k.startswith("new_")
            ),
            file=sys.stderr,
        )
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
