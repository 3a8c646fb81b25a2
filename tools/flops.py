"""Count the arithmetic of WaveGlow synthesis, analytically, per component.

Two counts for the inverse flow (``decode``) of a :class:`~waveflow.config.ModelConfig`:

* :func:`reference_flops`: what NVIDIA's ``glow.WaveGlow.infer`` executes (and ``WaveGlow.decode``
  with ``WaveNet.fold_linear_maps = False``):
  the upsampler, then per step ``cond_layer``, ``start``, the dilated ``in_layers``, ``res_skip``
  and ``end``. Achieved GFLOP/s in the benchmarks always divide *this* count by the time, so
  algebraic savings show up as speed.
* :func:`fast_flops`: what :class:`waveflow.infer.fast.FastWaveGlow` executes (upsampler folded or
  not; ``start`` folded into the first dilated conv; skip path folded into ``end``).

A FLOP is one multiply or one add (a multiply-add is 2), counted for the GEMMs and convolutions
only; elementwise work (gate, coupling, biases) is a few hundred FLOPs per group and is left out.
``tests/tools/test_bench_smoke.py`` checks :func:`reference_flops` against
``torch.utils.flop_counter.FlopCounterMode`` on a real decode.

Run ``python tools/flops.py --preset waveglow_ljspeech`` for the counts per second of audio (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from waveflow import presets
from waveflow.config import ModelConfig
from waveflow.flows import EarlyOutputSchedule
from waveflow.infer.fast import folded_layers

SAMPLE_RATE = 22050


def _schedule(cfg: ModelConfig) -> EarlyOutputSchedule:
    return EarlyOutputSchedule.compute(cfg.n_flows, cfg.n_group, cfg.n_early_every, cfg.n_early_size)


def _out_channels(cfg: ModelConfig, channels: int) -> int:
    n_b = channels - channels // 2
    return 2 * n_b if cfg.coupling == "affine" else n_b


def reference_flops(cfg: ModelConfig, num_frames: int, batch_size: int = 1) -> dict[str, int]:
    """FLOPs of the plain inverse for ``num_frames`` mel frames (``num_frames * hop / n_group`` groups).

    Returns ``{component: flops}`` plus ``"total"``. The upsampler computes its whole output
    (``hop * (F - 1) + kernel`` samples) before the trim, as NVIDIA's code does.
    """
    groups = num_frames * cfg.hop_length // cfg.n_group
    wn = cfg.wavenet
    c, n_layers, k = wn.n_channels, wn.n_layers, wn.kernel_size
    out: dict[str, int] = {}
    if cfg.conditioning == "frame":  # frame-rate encoder: a K-frame conv and a 1x1 conv per hop
        cc = cfg.cond_channels
        out["upsample"] = 2 * num_frames * (cfg.n_mels * cfg.cond_kernel_size * cc + cc * cc)
    else:  # ConvTranspose1d: every input frame scatters n_mels x kernel values into n_mels outputs.
        out["upsample"] = 2 * num_frames * cfg.n_mels * cfg.n_mels * cfg.upsample_kernel_size
    # A dense K-tap conv C -> 2C, or (separable) a per-channel K-tap conv and a 1x1 conv C -> 2C.
    dilated = c * k + c * 2 * c if wn.separable else (c * k) * (2 * c)
    per_group = {"cond_layer": 0, "start": 0, "in_layers": 0, "res_skip": 0, "end": 0, "mix": 0}
    for channels in _schedule(cfg).channels:
        n_a = channels // 2
        per_group["cond_layer"] += 2 * cfg.cond_size * (2 * c * n_layers)
        per_group["start"] += 2 * n_a * c
        per_group["in_layers"] += 2 * n_layers * dilated
        per_group["res_skip"] += 2 * ((n_layers - 1) * c * 2 * c + c * c)
        per_group["end"] += 2 * c * _out_channels(cfg, channels)
        if cfg.mixing in ("conv1x1", "conv1x1_lu"):  # a channel reversal is indexing, no arithmetic
            per_group["mix"] += 2 * channels * channels
    out.update({name: v * groups for name, v in per_group.items()})
    out = {name: v * batch_size for name, v in out.items()}
    out["total"] = sum(out.values())
    return out


def fast_flops(
    cfg: ModelConfig,
    num_frames: int,
    batch_size: int = 1,
    fold_upsampler: bool | int = True,
    winograd: bool = True,
) -> dict[str, int]:
    """FLOPs that :class:`~waveflow.infer.fast.FastWaveGlow` executes for ``num_frames`` frames.

    ``fold_upsampler`` as the engine takes it: ``True``, ``False`` or a byte budget (a partial
    fold: :func:`~waveflow.infer.fast.folded_layers` layers folded, the rest projected from the
    upsampled mel, whose rows then carry ``extra`` zero-weighted inputs). Exact: the first layer's
    taps are one GEMM over its input's ``K`` shifted copies; the other layers' are (``winograd``,
    the engine's default for kernel 3) the F(4, 3) tiles, 6 GEMMs per 4 rows over whole tiles (the
    tile transforms are vector additions, not counted), or the direct taps, without the rows an
    off-centre tap skips at the sequence edges.
    """
    groups = num_frames * cfg.hop_length // cfg.n_group
    wn = cfg.wavenet
    c, n_layers, k = wn.n_channels, wn.n_layers, wn.kernel_size
    window = math.ceil(cfg.upsample_kernel_size / cfg.hop_length)
    positions = cfg.hop_length // cfg.n_group
    n_folded = folded_layers(cfg, fold_upsampler)
    total_layers = cfg.n_flows * n_layers
    partial = 0 < n_folded < total_layers
    extra = -(-window * cfg.n_mels // positions) if partial else 0
    out = dict.fromkeys(("cond", "start", "in_layers", "res_skip", "mix"), 0)
    winograd = winograd and k == 3 and n_layers > 1
    tiles = [-(-groups // (4 * 2**i)) * 2**i for i in range(n_layers)]  # rows of each of the 6 GEMMs
    if n_folded < total_layers:  # per hop block, a GEMM from its window of frames to its rows
        width = cfg.n_mels * cfg.n_group + extra
        out = {"upsample": 2 * num_frames * window * cfg.n_mels * positions * width, **out}
    # Rows each tap of layer i multiplies: all of them for the centre tap, fewer near the edges.
    tap_rows = [
        sum(max(groups - abs((j - (k - 1) // 2) * 2**i), 0) for j in range(k)) for i in range(n_layers)
    ]
    # The engine folds the first n_folded (step, layer) pairs in the order it runs them.
    order = [(s, i) for s in reversed(range(cfg.n_flows)) for i in range(n_layers)]
    folded = set(order[:n_folded])
    for step, channels in enumerate(_schedule(cfg).channels):
        n_a, n_out = channels // 2, _out_channels(cfg, channels)
        for i in range(n_layers):
            if (step, i) in folded:  # per hop block: (W * n_mels) x (P * 2C), W * n_mels per output
                inputs = positions * extra if partial else window * cfg.n_mels
            else:
                inputs = cfg.n_mels * cfg.n_group + extra
            out["cond"] += 2 * inputs * 2 * c * groups
        out["start"] += 2 * n_a * c * groups  # the residual stream's first value
        out["in_layers"] += 2 * k * n_a * 2 * c * groups  # one GEMM over the K shifted copies of x_a
        if winograd:
            out["in_layers"] += sum(2 * 6 * r * c * 2 * c for r in tiles[1:])
        else:
            out["in_layers"] += sum(2 * c * 2 * c * r for r in tap_rows[1:])
        out["res_skip"] += 2 * ((n_layers - 1) * c * (c + n_out) + c * n_out) * groups
        if cfg.mixing != "none":  # FastWaveGlow applies every mixing, a reversal too, as a (c, c) GEMM
            out["mix"] += 2 * channels * channels * groups
    out = {name: v * batch_size for name, v in out.items()}
    out["total"] = sum(out.values())
    return out


def per_second(
    counts: dict[str, int], num_frames: int, hop_length: int, sample_rate: int = SAMPLE_RATE
) -> dict:
    """Scale counts for ``num_frames`` frames to one second of audio, in GFLOP."""
    seconds = num_frames * hop_length / sample_rate
    return {name: v / seconds / 1e9 for name, v in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="waveglow_ljspeech", help="a model builder in waveflow.presets")
    parser.add_argument("--frames", type=int, default=861, help="mel frames counted (scaled to 1 s)")
    args = parser.parse_args(argv)
    builder = getattr(presets, args.preset, None)
    if builder is None:
        parser.error(f"unknown preset {args.preset!r}")
    cfg = builder()
    hop = cfg.hop_length
    report = {
        "preset": args.preset,
        "gflop_per_second_of_audio": {
            "reference": per_second(reference_flops(cfg, args.frames), args.frames, hop),
            "fast_folded": per_second(fast_flops(cfg, args.frames, fold_upsampler=True), args.frames, hop),
            "fast_unfolded": per_second(fast_flops(cfg, args.frames, fold_upsampler=False), args.frames, hop),
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
