"""``waveflow demo-corpus OUTDIR [--num-utterances 24] [--seconds 2.0] [--seed 1234]``.

Builds a small synthetic corpus in LJSpeech format (``OUTDIR/metadata.csv``, ``OUTDIR/wavs/*.wav``,
22,050 Hz 16-bit): speech-like signals with a moving pitch, formants, fricative noise and noisy
pauses, the same for a given seed on every machine. It takes seconds and needs no download, so the
whole recipe can be tried end to end (``recipes/ljspeech/run.sh --demo``). It is not speech: a
model trained on it says nothing about quality on real voices.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo-corpus",
        help="write a small synthetic LJSpeech-format corpus for smoke runs (no download)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", type=Path, help="folder to create (must not exist, or be empty)")
    parser.add_argument("--num-utterances", type=int, default=24, help="number of utterances (default 24)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each utterance (default 2.0)")
    parser.add_argument("--seed", type=int, default=1234, help="seed (default 1234)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow.data import build_demo_corpus

    root = build_demo_corpus(
        args.outdir, num_utterances=args.num_utterances, seconds=args.seconds, seed=args.seed
    )
    print(f"{args.num_utterances} utterances of {args.seconds:g} s -> {root}/metadata.csv, {root}/wavs/")
    return 0
