"""``waveflow score CKPT WAV... [--json OUT]``: exact likelihood of recordings under the model.

A flow gives the exact density of audio given its mel: for each file the mel is computed with the
checkpoint's front end and the negative log-likelihood of the samples is reported in nats and
bits per sample (a continuous density of samples in [-1, 1], so values are usually negative for a
good model; lower is more likely). Audio at another sample rate is resampled to the checkpoint's
(with a note); each clip is cut to a multiple of ``n_group`` that its mel covers (``num_samples``
says how much was scored). Files that cannot be read are listed at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_KEYS = ("nats_per_sample", "bits_per_sample")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from waveflow.cli._inputs import add_device_arguments

    parser = subparsers.add_parser(
        "score",
        help="negative log-likelihood (nats and bits per sample) of audio files under a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="waveflow or NVIDIA WaveGlow checkpoint")
    parser.add_argument("inputs", nargs="*", metavar="WAV", help="audio files, folders or globs")
    parser.add_argument("--filelist", type=Path, help="file with one audio path per line")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the scores to this JSON file")
    add_device_arguments(parser, precision=False)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import math
    import sys

    from tqdm import tqdm

    from waveflow.cli._inputs import (
        AUDIO_EXTENSIONS,
        Failures,
        atomic_write_text,
        check_output_file,
        collect_inputs,
        json_safe,
        load_vocoder,
        make_output_file,
        progress_disabled,
        resolve_device,
        writing,
    )
    from waveflow.cli.resynthesize import load_at_rate

    files = collect_inputs(args.inputs, args.filelist, AUDIO_EXTENSIONS, what="audio input(s)")
    if args.json is not None:
        check_output_file(args.json)  # before the scoring
    vocoder = load_vocoder(args.checkpoint, device=resolve_device(args.device))
    failures = Failures()
    rows = []
    for path in tqdm(files, desc="score", unit="file", file=sys.stderr, disable=progress_disabled()):
        try:
            audio = load_at_rate(path, vocoder.sample_rate)
            scores = vocoder.score(audio, vocoder.sample_rate)
        except ValueError as exc:
            failures.add(path, exc)
            continue
        # num_samples: what was scored (the clip is cut to a multiple of n_group its mel covers)
        rows.append(
            {
                "path": str(path),
                "num_samples": int(scores["num_samples"]),
                **{k: float(scores[k]) for k in _KEYS},
            }
        )

    mean = {k: (sum(r[k] for r in rows) / len(rows) if rows else math.nan) for k in _KEYS}
    if rows:
        width = max(len("mean"), *(len(r["path"]) for r in rows))
        print(f"{'file':<{width}}  {'nats/sample':>12}  {'bits/sample':>12}  {'samples':>9}")
        for r in rows:
            print(
                f"{r['path']:<{width}}  {r['nats_per_sample']:>12.4f}  {r['bits_per_sample']:>12.4f}  {r['num_samples']:>9}"
            )
        print(
            f"{'mean':<{width}}  {mean['nats_per_sample']:>12.4f}  {mean['bits_per_sample']:>12.4f}  {len(rows):>6} file(s)"
        )
    if args.json is not None:
        report = {
            "checkpoint": str(args.checkpoint),
            "sample_rate": vocoder.sample_rate,
            "files": rows,
            "mean": mean,
            "num_files": len(rows),
            "failed": [{"path": str(p), "reason": r} for p, r in failures.items],
        }
        with writing(make_output_file(args.json)):
            atomic_write_text(args.json, json.dumps(json_safe(report), indent=2) + "\n")
    return failures.report("score", len(files))
