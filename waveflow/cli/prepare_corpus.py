"""``waveflow prepare-corpus CORPUS OUTDIR [--exclude-licence PREFIX ...]``: file lists from a manifest corpus.

CORPUS holds ``train/manifest.jsonl`` and ``eval/manifest.jsonl`` (the layout of
``build_speech_corpus.sh``). Training clips whose licence starts with an excluded prefix are left
out (default: ``GPL``, so that the trained model can be shipped under the remaining licences);
the evaluation list keeps every clip (scores are not redistributed). Writes ``OUTDIR/train.txt``,
``OUTDIR/eval.txt`` and ``OUTDIR/licences.json`` (minutes per source and licence, kept or not).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare-corpus",
        help="write train/eval file lists from a manifest corpus, leaving out licences that forbid shipping",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("corpus", type=Path, help="folder with train/manifest.jsonl and eval/manifest.jsonl")
    parser.add_argument("outdir", type=Path, help="output folder for train.txt, eval.txt, licences.json")
    parser.add_argument(
        "--exclude-licence",
        action="append",
        default=None,
        metavar="PREFIX",
        help="leave out training clips whose licence starts with PREFIX (repeatable; default GPL; '' keeps all)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow.cli import CLIError
    from waveflow.data.filelists import write_filelist
    from waveflow.data.manifest import read_manifest, select
    from waveflow.fileio import atomic_write_text

    excluded = [p for p in (args.exclude_licence if args.exclude_licence is not None else ["GPL"]) if p]
    train = select(read_manifest(args.corpus / "train" / "manifest.jsonl"), excluded)
    evaluation = read_manifest(args.corpus / "eval" / "manifest.jsonl")
    if not train.kept:
        raise CLIError(
            f"every training clip of {args.corpus} has an excluded licence ({', '.join(excluded)})"
        )
    missing = [c.path for c in train.kept + evaluation if not c.path.is_file()]
    if missing:
        raise CLIError(f"{len(missing)} audio file(s) named in the manifests are missing, e.g. {missing[0]}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    write_filelist(args.outdir / "train.txt", [c.path.resolve() for c in train.kept])
    write_filelist(args.outdir / "eval.txt", [c.path.resolve() for c in evaluation])
    report = {"excluded_licences": excluded, "train": train.summary()}
    atomic_write_text(args.outdir / "licences.json", json.dumps(report, indent=2) + "\n")
    minutes = sum(c.seconds for c in train.kept) / 60
    print(
        f"train: {len(train.kept)} clips ({minutes:.1f} min) kept, {len(train.dropped)} left out "
        f"({', '.join(excluded) or 'nothing excluded'}); eval: {len(evaluation)} clips"
    )
    print(f"wrote {args.outdir / 'train.txt'}, {args.outdir / 'eval.txt'}, {args.outdir / 'licences.json'}")
    return 0
