"""The GAN peer of the learning curves: ParallelWaveGAN's HiFi-GAN generator in its mel-loss phase.

A HiFi-GAN generator with 128 channels (V2 size, ``parallel_wavegan.models.HiFiGANGenerator``,
PyPI ``parallel-wavegan==0.6.1``) trained, as in that toolkit's first phase before the
discriminators start, on the L1 distance of log-mel spectrograms (weight 45, Adam 2e-4,
betas 0.5/0.9, gradient norm clipped at 10 as waveflow's candidates are; without clipping the
generator diverged to NaN after 12 CPU-minutes here), batches of 4 x 8192 samples, on the same corpus and file lists as waveflow's
candidates, until the process has used ``--minutes`` of CPU time. The mel is waveflow's
Tacotron2 front end (natural-log, 80 bands, 0-8 kHz), so both systems see the same input.
Checkpoints are written every ``--checkpoint-minutes`` of CPU time; ``--evaluate`` scores each
one on the evaluation clips exactly as ``tools/learning_curves.py`` scores waveflow checkpoints
and writes a JSON curve that ``learning_curves.py --extra-curves`` draws beside them.

parallel-wavegan 0.6.1 is an sdist that needs build isolation off and imports
``scipy.signal.kaiser`` (moved to ``scipy.signal.windows`` in SciPy 1.13), which is aliased here::

    pip install --no-deps --no-build-isolation parallel-wavegan==0.6.1
    OMP_NUM_THREADS=1 python tools/peer_hifigan.py train --filelist train.txt --out-dir /tmp/runs/hifigan
    python tools/peer_hifigan.py evaluate --out-dir /tmp/runs/hifigan --filelist eval.txt --out curve.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import write_report  # noqa: E402

from waveflow.audio.features import MelSpectrogram  # noqa: E402
from waveflow.audio.io import load_audio  # noqa: E402
from waveflow.data import SegmentDataset, read_filelist  # noqa: E402
from waveflow.presets import tacotron2_mel  # noqa: E402

HOP = 256


def generator(channels: int) -> torch.nn.Module:
    import scipy.signal
    import scipy.signal.windows

    if not hasattr(scipy.signal, "kaiser"):  # parallel-wavegan 0.6.1 predates SciPy 1.13
        scipy.signal.kaiser = scipy.signal.windows.kaiser
    from parallel_wavegan.models import HiFiGANGenerator

    return HiFiGANGenerator(
        in_channels=80, out_channels=1, channels=channels
    )  # upsampling 8 * 8 * 2 * 2 = 256


def train(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mel_fn = MelSpectrogram.from_config(tacotron2_mel())
    gen = generator(args.channels)
    opt = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.9))
    data = SegmentDataset(read_filelist(args.filelist), 22050, args.segment, seed=args.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    spent, step, skipped = 0.0, 0, 0  # CPU minutes and steps of earlier sessions
    if args.resume:  # weights, optimizer and counters of a checkpoint of this tool
        state = torch.load(args.resume, weights_only=True)
        gen.load_state_dict(state["generator"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        spent, step = state["cpu_minutes"], state["step"]
    start = time.process_time()
    next_save = (int(spent // args.checkpoint_minutes) + 1) * args.checkpoint_minutes
    log = open(out / "log.jsonl", "a")
    while True:
        for audio in loader:  # (B, T)
            with torch.no_grad():
                target = mel_fn(audio)  # (B, 80, T / hop + 1)
            fake = gen(target[:, :, :-1]).squeeze(1)  # (B, T)
            step += 1
            cpu_minutes = spent + (time.process_time() - start) / 60
            if not torch.isfinite(fake).all():  # a diverging step is skipped, as waveflow's trainer does
                skipped += 1
                opt.zero_grad(set_to_none=True)
                continue
            loss = 45.0 * (mel_fn(fake) - target).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(gen.parameters(), args.grad_clip)
            if torch.isfinite(grad_norm):
                opt.step()
            else:
                skipped += 1
            if step % 25 == 0:
                log.write(
                    json.dumps(
                        {
                            "step": step,
                            "cpu_minutes": cpu_minutes,
                            "mel_loss": float(loss) / 45,
                            "skipped": skipped,
                        }
                    )
                    + "\n"
                )
                log.flush()
            done = cpu_minutes >= args.minutes
            if cpu_minutes >= next_save or done:
                path = out / f"ckpt_{step:06d}.pt"
                torch.save({"generator": gen.state_dict(), "optimizer": opt.state_dict(), "step": step,
                            "cpu_minutes": cpu_minutes, "channels": args.channels}, path)  # fmt: skip
                print(
                    json.dumps({"checkpoint": str(path), "step": step, "cpu_minutes": cpu_minutes}),
                    flush=True,
                )
                next_save += args.checkpoint_minutes
            if done:
                return 0


@torch.no_grad()
def evaluate(args: argparse.Namespace) -> int:
    from learning_curves import mean_scores, score

    mel_fn = MelSpectrogram.from_config(tacotron2_mel())
    references = read_filelist(args.filelist)
    curve = []
    done = {}
    if args.reuse is not None and Path(args.reuse).is_file():
        done = {p["checkpoint"]: p for p in json.loads(Path(args.reuse).read_text())[args.label]}
    for path in sorted(Path(args.out_dir).glob("ckpt_*.pt")):
        if str(path) in done:
            curve.append(done[str(path)])
            continue
        state = torch.load(path, weights_only=True)
        gen = generator(state["channels"])
        gen.load_state_dict(state["generator"])
        gen.remove_weight_norm()
        gen.eval()
        rows = []
        for ref in references:
            audio, _ = load_audio(ref, 22050)
            fake = gen(mel_fn(torch.from_numpy(audio))[None]).reshape(-1).clamp(-1, 1).numpy()
            rows.append(score(audio, fake, 22050))
        entry = {
            "step": state["step"],
            "cpu_minutes": state["cpu_minutes"],
            "checkpoint": str(path),
            **mean_scores(rows),
        }
        print(json.dumps(entry), flush=True)
        curve.append(entry)
    write_report({args.label: curve}, Path(args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--filelist", required=True)
    t.add_argument("--out-dir", required=True)
    t.add_argument("--minutes", type=float, default=40.0, help="CPU-minutes of training")
    t.add_argument("--checkpoint-minutes", type=float, default=5.0)
    t.add_argument("--channels", type=int, default=128)
    t.add_argument("--segment", type=int, default=8192)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument(
        "--grad-clip", type=float, default=10.0, help="gradient-norm clipping (waveflow's candidates use 10)"
    )
    t.add_argument("--resume", default=None, help="continue from a checkpoint of this tool")
    e = sub.add_parser("evaluate")
    e.add_argument("--out-dir", required=True)
    e.add_argument("--filelist", required=True)
    e.add_argument("--label", default="HiFi-GAN V2-size, mel loss (parallel-wavegan 0.6.1)")
    e.add_argument("--out", required=True)
    e.add_argument(
        "--reuse", default=None, help="an earlier curve of this tool: its checkpoints are not re-scored"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    raise SystemExit(main())
