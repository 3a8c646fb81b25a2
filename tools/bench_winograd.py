"""Dilated kernel-3 convolution: oneDNN's direct ``F.conv1d`` against Winograd F(2, 3) and F(4, 3).

For each dilation, at a WaveNet layer's shape (``C -> 2C`` channels, ``T`` group-frames, batch
``B``), times the training use (forward + backward, input and weight gradients) and the forward
alone, the variants interleaved (A B C A B C) with other processes' CPU time recorded. The
``speedup`` of each Winograd tile over ``F.conv1d`` per dilation is what :data:`waveflow.nn.
wavenet.WINOGRAD_MIN_DILATION` and the tile are chosen from; ``max_rel_diff`` checks that all give
the same numbers.

    python tools/bench_winograd.py --out tools/results/bench_winograd.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_inference import matmul_gflops, physical_cores, summarize, time_interleaved
from bench_report import write_report

from waveflow.nn.winograd import dilated_conv3


def _variants(x, w, b, grad, d):
    """``{use: {variant: fn}}``: ``direct`` (``F.conv1d``), ``f23`` and ``f43`` (Winograd)."""
    convs = {
        "direct": lambda: F.conv1d(x, w, b, padding=d, dilation=d),
        "f23": lambda: dilated_conv3(x, w, b, d, tile=2),
        "f43": lambda: dilated_conv3(x, w, b, d, tile=4),
    }

    def train(conv):
        return lambda: conv().backward(grad)

    def forward(conv):
        def run():
            with torch.no_grad():
                conv()

        return run

    return {
        "train": {k: train(conv) for k, conv in convs.items()},
        "forward": {k: forward(conv) for k, conv in convs.items()},
    }


def _max_rel_diff(x, w, b, grad, d, tile: int) -> float:
    """Largest difference of output and gradients, relative to each tensor's largest magnitude."""
    results = []
    for fn in (
        lambda: F.conv1d(x, w, b, padding=d, dilation=d),
        lambda: dilated_conv3(x, w, b, d, tile=tile),
    ):
        out = fn()
        results.append([out.detach(), *torch.autograd.grad(out, [x, w, b], grad)])
    return max(float((a - r).abs().max() / r.abs().max()) for a, r in zip(*results, strict=True))


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    c, t, batch = args.channels, args.frames, args.batch_size
    x = torch.randn(batch, c, t, generator=gen).requires_grad_()
    w = (torch.randn(2 * c, c, 3, generator=gen) / (3 * c) ** 0.5).requires_grad_()
    b = torch.randn(2 * c, generator=gen).requires_grad_()
    grad = torch.randn(batch, 2 * c, t, generator=gen)
    direct_flop = 2 * batch * t * 2 * c * c * 3  # multiply-adds of the direct forward, x2
    report: dict[str, Any] = {
        "machine": {
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "matmul_gflops": matmul_gflops(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "dilations": {},
    }
    for d in args.dilations:
        entry: dict[str, Any] = {
            "max_rel_diff": {f"f{m}3": _max_rel_diff(x, w, b, grad, d, m) for m in (2, 4)}
        }
        for use, fns in _variants(x, w, b, grad, d).items():
            for fn in fns.values():
                for _ in range(args.warmup):
                    fn()
            walls, others = time_interleaved(fns, args.repeats)
            flop = direct_flop * (3 if use == "train" else 1)
            result = {}
            for k in fns:
                result[k] = summarize(walls[k], others[k])
                result[k]["direct_equivalent_gflops"] = flop / result[k]["median_s"] / 1e9
            for k in ("f23", "f43"):
                result[k]["speedup"] = statistics.median(walls["direct"]) / statistics.median(walls[k])
            entry[use] = result
        report["dilations"][str(d)] = entry
        print(
            f"  d={d}: train F(2,3) {entry['train']['f23']['speedup']:.2f}x F(4,3) "
            f"{entry['train']['f43']['speedup']:.2f}x; forward F(2,3) {entry['forward']['f23']['speedup']:.2f}x "
            f"F(4,3) {entry['forward']['f43']['speedup']:.2f}x",
            flush=True,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=256, help="C: the layer maps C -> 2C channels")
    parser.add_argument(
        "--frames", type=int, default=2000, help="T: group-frames (16000 samples / n_group 8)"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if min(args.dilations) < 1 or args.channels < 1 or args.frames < 1 or args.batch_size < 1:
        parser.error("--dilations, --channels, --frames and --batch-size must be >= 1")
    write_report(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
