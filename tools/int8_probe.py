"""Would int8 pay on this CPU? fp32 GEMM against torch's dynamic-int8 linear at WaveGlow's shapes.

The fast engine is GEMM-bound (``tools/flops.py``), so an int8 path can only be as much faster as
the int8 GEMM itself. This times, interleaved, ``torch.nn.functional.linear`` (fp32) and
``torch.ops.quantized.linear_dynamic`` (weights int8, activations quantized per call, fbgemm or
oneDNN as torch picks) on the shapes of NVIDIA's model for one second of audio, and reports the
ratio per shape and for the mix weighted by the model's FLOPs::

    python tools/int8_probe.py --out int8_probe.json
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch
from bench_report import write_report

# (rows, in, out, share of the fast engine's FLOPs) for 1 s of audio (2756 group-frames), C = 256:
# a dilated-conv tap (C -> 2C; 3 taps per layer), a residual+output GEMM (C -> C + 4), and the
# unfolded conditioning of one layer (640 -> 2C).
SHAPES = {
    "dilated_tap": (2756, 256, 512, 0.56),
    "res_out": (2756, 256, 260, 0.16),
    "cond_layer": (2756, 640, 512, 0.28),
}


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def probe(repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    engine = torch.backends.quantized.engine
    report = {"threads": threads, "quantized_engine": engine, "torch": torch.__version__, "shapes": {}}
    weighted = 0.0
    for name, (rows, k, n, share) in SHAPES.items():
        x = torch.randn(rows, k)
        w = torch.randn(n, k) * 0.05
        b = torch.randn(n)
        # per-output-channel symmetric int8 weights, as a real int8 model would store them
        scales = w.abs().amax(dim=1) / 127
        qw = torch.quantize_per_channel(w, scales, torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, b)

        def fp32(x=x, w=w, b=b):
            return torch.nn.functional.linear(x, w, b)

        def int8(x=x, packed=packed):
            return torch.ops.quantized.linear_dynamic(x, packed)

        fp32(), int8()  # warm-up
        t32, t8 = [], []
        for _ in range(repeats):  # interleaved
            t32 += _time(fp32, 3)
            t8 += _time(int8, 3)
        m32, m8 = statistics.median(t32), statistics.median(t8)
        err = float((int8() - fp32()).abs().max() / fp32().abs().max())
        report["shapes"][name] = {
            "rows": rows,
            "in": k,
            "out": n,
            "fp32_gflops": 2 * rows * k * n / m32 / 1e9,
            "int8_gops": 2 * rows * k * n / m8 / 1e9,
            "int8_speedup": m32 / m8,
            "relative_error": err,
        }
        weighted += share * m8 / m32
    report["flop_weighted_int8_speedup"] = 1.0 / weighted
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    write_report(probe(args.repeats, args.threads), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
