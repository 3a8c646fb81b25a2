"""How much of a vocoder's output is a buzz locked to its group (block) rate.

A flow that squeezes audio into groups of ``n_group`` samples generates each group as one vector;
until its coupling networks have learned to join neighbouring groups smoothly, the joins repeat
every ``n_group`` samples and put energy at the harmonics of ``sample_rate / n_group`` (86.1 Hz
for 256-sample groups at 22.05 kHz) whatever is being said. This tool measures it: on the long-term
average power spectrum of the vocoded evaluation clips and of the recordings, the ratio of the
power in narrow bands around those harmonics (up to ``--max-hz``) to the power of the bands
between them, in dB; the recordings give the speech's own ratio for comparison.

It also measures the cause directly: the waveform that repeats every hop (the mean of each clip's
hop-long blocks), how alike it is between clips (correlation) and its share of the clips' energy.
A vocoder that generates a frame-locked waveform (the same pulse every hop, scaled by the mel)
scores a correlation near 1 across speakers; recordings, whose pitch is not locked to the hop, near 0.

    python tools/frame_periodicity.py CKPT --filelist eval.txt --out tools/results/frame_periodicity.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import write_report  # noqa: E402

from waveflow import Vocoder  # noqa: E402
from waveflow.audio.io import load_audio  # noqa: E402
from waveflow.data import read_filelist  # noqa: E402

N_FFT = 8192  # 2.7 Hz bins at 22.05 kHz: the 86 Hz harmonics are ~32 bins apart


def average_spectrum(clips: list[np.ndarray]) -> np.ndarray:
    window = np.hanning(N_FFT)
    total, frames = np.zeros(N_FFT // 2 + 1), 0
    for audio in clips:
        for start in range(0, len(audio) - N_FFT, N_FFT // 2):
            total += np.abs(np.fft.rfft(audio[start : start + N_FFT] * window)) ** 2
            frames += 1
    return total / max(frames, 1)


def harmonic_ratio_db(spectrum: np.ndarray, sample_rate: int, fundamental: float, max_hz: float) -> float:
    """Power within +-3 bins of k * fundamental over power at (k + 1/2) * fundamental, k = 1.."""
    bin_hz = sample_rate / N_FFT
    on, off = 0.0, 0.0
    k = 1
    while k * fundamental <= max_hz:
        centre = int(round(k * fundamental / bin_hz))
        between = int(round((k + 0.5) * fundamental / bin_hz))
        on += spectrum[centre - 3 : centre + 4].sum()
        off += spectrum[between - 3 : between + 4].sum()
        k += 1
    return float(10 * np.log10(on / off))


def static_pattern(clips: list[np.ndarray], period: int) -> tuple[float, float]:
    """The part of each clip that repeats every ``period`` samples whatever is said.

    Per clip, the mean over its ``period``-sample blocks (a waveform of ``period`` samples). Returns
    the mean correlation of those waveforms between clips (near 1: every clip carries the same
    one) and their share of the clips' energy (the repeated waveform's power over the clip's; the
    recordings' own share is the reference, near 0).
    """
    patterns, shares = [], []
    for audio in clips:
        blocks = audio[: audio.size // period * period].reshape(-1, period)
        pattern = blocks.mean(axis=0)
        patterns.append(pattern)
        shares.append(float((pattern**2).mean() / max((blocks**2).mean(), 1e-12)))
    corr = np.corrcoef(np.array(patterns))
    n = len(patterns)
    mean_corr = float((corr.sum() - n) / (n * n - n)) if n > 1 else float("nan")
    return mean_corr, float(np.mean(shares))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="+", help="waveflow checkpoints or registered names")
    parser.add_argument("--filelist", required=True)
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument("--max-hz", type=float, default=2000.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    references = [load_audio(p, 22050)[0] for p in read_filelist(args.filelist)]
    report = {
        "settings": {"filelist": args.filelist, "sigma": args.sigma, "max_hz": args.max_hz},
        "models": {},
    }
    for name in args.checkpoint:
        from waveflow.cli._inputs import check_checkpoint_path

        vocoder = Vocoder.from_checkpoint(check_checkpoint_path(name))
        rate, fundamental = vocoder.sample_rate, vocoder.sample_rate / vocoder.n_group
        generated = []
        for i, audio in enumerate(references):
            out, _ = vocoder(
                vocoder.mel(audio, rate), sigma=args.sigma, generator=torch.Generator().manual_seed(i)
            )
            generated.append(out[0].numpy())
        hop = vocoder.hop_length
        corr, share = static_pattern(generated, hop)
        ref_corr, ref_share = static_pattern(references, hop)
        report["models"][name] = {
            "n_group": vocoder.n_group,
            "group_rate_hz": fundamental,
            "vocoded_db": harmonic_ratio_db(average_spectrum(generated), rate, fundamental, args.max_hz),
            "recordings_db": harmonic_ratio_db(average_spectrum(references), rate, fundamental, args.max_hz),
            "hop_length": hop,
            "hop_pattern_corr_vocoded": corr,
            "hop_pattern_corr_recordings": ref_corr,
            "hop_pattern_share_vocoded": share,
            "hop_pattern_share_recordings": ref_share,
        }
        print(json.dumps({name: report["models"][name]}), flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
