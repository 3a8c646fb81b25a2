"""``waveflow prepare-ljspeech SOURCE OUTDIR [--split nvidia|espnet|random | --split-dir DIR]``.

SOURCE is an LJSpeech-1.1 folder (or the folder above it) or ``LJSpeech-1.1.tar.bz2``, which is
extracted (safely) to ``OUTDIR/LJSpeech-1.1``. Nothing is downloaded. The metadata and every wav are
checked; missing, unreadable or wrongly sampled files stop the preparation and are all named; silent
and clipped files are listed as warnings.

Writes ``OUTDIR/train.txt``, ``val.txt``, ``test.txt`` (absolute wav paths, the file lists
``waveflow train`` and ``waveflow evaluate`` read) and ``OUTDIR/prepare_report.json`` (counts,
durations, flagged files, split sizes, ids the split names that the corpus lacks, and how many test
utterances are in the training part of the other published splits). The outputs appear together
at the end: an error leaves none of them.

Splits (see ``waveflow.data.ljspeech``): ``nvidia`` (Tacotron2/WaveGlow: 12500/100/500, default),
``espnet`` (ESPnet2/ParallelWaveGAN: 12600/250/250), ``random`` (seeded, ``--num-val``/``--num-test``),
or ``--split-dir`` with id lists of any other published split, e.g. HiFi-GAN's ``LJSpeech-1.1``
folder (``training.txt``/``validation.txt``; HiFi-GAN has no test list, so its validation list is
used as the test list).
"""

from __future__ import annotations

import argparse
from pathlib import Path

# = waveflow.data.ljspeech.SPLITS, repeated so that building the parser imports nothing heavy (a test checks).
SPLIT_CHOICES = ("nvidia", "espnet", "random")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare-ljspeech",
        help="check an LJSpeech-1.1 folder or archive and write train/val/test file lists",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="LJSpeech-1.1 folder or LJSpeech-1.1.tar.bz2")
    parser.add_argument("outdir", type=Path, help="output folder for the file lists and the report")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--split", choices=SPLIT_CHOICES, help="named split (default nvidia)")
    which.add_argument("--split-dir", type=Path, help="folder with train/val/test id lists of another split")
    parser.add_argument("--num-val", type=int, help="validation utterances of a random split (default 100)")
    parser.add_argument("--num-test", type=int, help="test utterances of a random split (default 500)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of a random split (default 1234)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow.cli import CLIError
    from waveflow.cli._inputs import progress_disabled
    from waveflow.data.prepare import prepare_ljspeech

    split = str(args.split_dir) if args.split_dir is not None else (args.split or "nvidia")
    if split != "random" and (args.num_val is not None or args.num_test is not None):
        raise CLIError("--num-val and --num-test apply to --split random only")
    random = {"num_val": args.num_val or 100, "num_test": args.num_test or 500, "seed": args.seed}
    prepare_ljspeech(args.source, args.outdir, split, **random, disable_progress=progress_disabled())
    return 0
