"""Pitch from a mel: the source models' predictor head, classes against regression (JSON report).

Source models (``model.source: sine``) drive their excitation at synthesis from the pitch their
predictor reads off the mel, so its error on voices it never heard is what the listener gets. This
tool trains two heads on the same frames and scores both on the evaluation clips against YIN on the
reference audio (:func:`waveflow.nn.source.track_f0`):

* ``classes``: :class:`waveflow.nn.source.F0Predictor` (log-spaced pitch classes, soft targets);
* ``regression``: the first design -- three convolutions regressing ln(pitch) with an L1 loss
  on voiced frames, beside the same voicing logit.

    python tools/pitch_predictor.py --train /tmp/pc/train.txt --eval /tmp/pc/eval.txt \\
        --steps 2000 --out tools/results/pitch_predictor.json

Scores (frames voiced in both): median absolute error in cents, the share of frames off by more
than 100 cents, and the voicing agreement over all frames; every ``--every`` steps, with the CPU
seconds spent training so far.
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
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import _cpu_name, matmul_gflops  # noqa: E402
from bench_report import write_report  # noqa: E402

from waveflow.audio.features import MelSpectrogram  # noqa: E402
from waveflow.audio.io import load_audio  # noqa: E402
from waveflow.data import read_filelist  # noqa: E402
from waveflow.nn.source import FREQ_MAX, FREQ_MIN, F0Predictor, track_f0  # noqa: E402
from waveflow.presets import tacotron2_mel  # noqa: E402


class RegressionHead(nn.Module):
    """The first predictor: ln(pitch) by L1 regression on voiced frames, plus a voicing logit."""

    def __init__(self, n_mels: int, channels: int = 128, kernel_size: int = 5, n_layers: int = 3):
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv1d(n_mels if i == 0 else channels, channels, kernel_size, padding=kernel_size // 2)
            )
            for i in range(n_layers)
        )
        self.out = nn.Conv1d(channels, 2, 1)
        self.offset = math.log(150.0 / 22050.0)

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        h = mel
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        out = self.out(h)
        return out[:, 0] + self.offset, out[:, 1]

    def loss(self, mel: Tensor, f0: Tensor, voiced: Tensor) -> Tensor:
        log_f0, logit = self(mel)
        bce = F.binary_cross_entropy_with_logits(logit, voiced.float())
        if not voiced.any():
            return bce
        return bce + (log_f0[voiced] - f0[voiced].log()).abs().mean()

    @torch.no_grad()
    def predict(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        log_f0, logit = self(mel)
        return log_f0.exp().clamp(FREQ_MIN, FREQ_MAX), logit > 0


def frames_of(filelist: str, mel_fn: MelSpectrogram) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per clip: its mel ``(n_mels, F)``, YIN pitch in cycles per sample ``(F,)`` and voicing ``(F,)``."""
    sample_rate = mel_fn.config.sample_rate
    clips = []
    for path in read_filelist(filelist):
        audio = torch.from_numpy(np.asarray(load_audio(path, sample_rate)[0], dtype=np.float32).reshape(-1))
        mel = mel_fn(audio[None])[0]
        f0, voiced = track_f0(audio[None], sample_rate, mel_fn.hop_length)
        n = min(mel.shape[1], f0.shape[1])
        clips.append((mel[:, :n], f0[0, :n] / sample_rate, voiced[0, :n]))
    return clips


def score(head: nn.Module, clips: list[tuple[Tensor, Tensor, Tensor]]) -> dict[str, float]:
    head.eval()
    errors, agree = [], []
    for mel, f0, voiced in clips:
        freq, is_voiced = head.predict(mel[None])
        freq, is_voiced = freq[0], is_voiced[0]
        agree.append(float((is_voiced == voiced).float().mean()))
        both = is_voiced & voiced
        if both.any():
            errors.append((1200 * torch.log2(freq[both] / f0[both])).abs())
    head.train()
    cents = torch.cat(errors)
    return {
        "median_cents": float(cents.median()),
        "gross_over_100_cents": float((cents > 100).float().mean()),
        "voicing_agreement": float(np.mean(agree)),
    }


def train(
    head: nn.Module,
    clips: list[tuple[Tensor, Tensor, Tensor]],
    evaluation: list[tuple[Tensor, Tensor, Tensor]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr)
    curve, cpu = [], 0.0
    for step in range(1, args.steps + 1):
        start = time.process_time()
        mels, f0s, voiced = [], [], []
        for _ in range(args.batch):
            mel, f0, v = clips[rng.integers(len(clips))]
            first = int(rng.integers(0, max(1, mel.shape[1] - args.frames)))
            mels.append(mel[:, first : first + args.frames])
            f0s.append(f0[first : first + args.frames])
            voiced.append(v[first : first + args.frames])
        n = min(m.shape[1] for m in mels)
        loss = head.loss(
            torch.stack([m[:, :n] for m in mels]),
            torch.stack([f[:n] for f in f0s]),
            torch.stack([v[:n] for v in voiced]),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        cpu += time.process_time() - start
        if step % args.every == 0:
            point = {"step": step, "train_cpu_s": round(cpu, 1), **score(head, evaluation)}
            curve.append(point)
            print(json.dumps({"head": type(head).__name__, **point}), flush=True)
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="file list of training clips")
    parser.add_argument("--eval", required=True, help="file list of evaluation clips")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mel_fn = MelSpectrogram.from_config(tacotron2_mel())
    clips, evaluation = frames_of(args.train, mel_fn), frames_of(args.eval, mel_fn)
    report: dict[str, Any] = {
        "machine": {"cpu": _cpu_name(), "threads": args.threads, "matmul_gflops_start": matmul_gflops()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "frames": {
            "train": sum(c[0].shape[1] for c in clips),
            "eval": sum(c[0].shape[1] for c in evaluation),
        },
        "heads": {},
    }
    for name, make in (("classes", F0Predictor), ("regression", RegressionHead)):
        torch.manual_seed(args.seed)
        report["heads"][name] = train(make(mel_fn.n_mels), clips, evaluation, args)
    report["machine"]["matmul_gflops_end"] = matmul_gflops()
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
