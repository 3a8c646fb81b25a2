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
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from waveflow.data import ScanReport

_OUTPUTS = ("train.txt", "val.txt", "test.txt", "prepare_report.json")
# = waveflow.data.ljspeech.SPLITS, repeated so that building the parser imports nothing heavy (a test checks).
SPLIT_CHOICES = ("nvidia", "espnet", "random")
_MAX_SHOWN = 20


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

    split = str(args.split_dir) if args.split_dir is not None else (args.split or "nvidia")
    if split != "random" and (args.num_val is not None or args.num_test is not None):
        raise CLIError("--num-val and --num-test apply to --split random only")
    if args.outdir.exists() and not args.outdir.is_dir():
        raise CLIError(f"{args.outdir} exists and is not a folder")
    args.outdir.parent.mkdir(parents=True, exist_ok=True)
    # Everything is produced in a staging folder beside OUTDIR and moved in at the end.
    staging = Path(tempfile.mkdtemp(prefix=f".{args.outdir.name}.prepare-", dir=args.outdir.parent))
    try:
        moves = _prepare(args, split, staging)
        args.outdir.mkdir(exist_ok=True)
        for name in moves:
            os.replace(staging / name, args.outdir / name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return 0


def _prepare(args: argparse.Namespace, split: str, staging: Path) -> list[str]:
    """Check the corpus, split it and write the outputs into ``staging``; return the names to move."""
    from waveflow import __version__
    from waveflow.cli import CLIError
    from waveflow.data import check_contamination, read_metadata, split_corpus, write_filelist
    from waveflow.data.ljspeech import CORPUS_FOLDER, LJSPEECH_SAMPLE_RATE, extract_archive, find_corpus_root

    moves: list[str] = []
    if args.source.is_file():
        extracted = args.outdir / CORPUS_FOLDER
        if (extracted / "metadata.csv").is_file():
            print(f"using the corpus already extracted to {extracted}")
            root = staged = extracted
        elif extracted.exists():
            raise CLIError(
                f"{extracted} exists but holds no metadata.csv; remove it or choose another OUTDIR"
            )
        else:
            print(f"extracting {args.source} ...")
            staged = staging / CORPUS_FOLDER
            with _ArchiveProgress() as progress:
                os.replace(extract_archive(args.source, staging / "extract", progress=progress), staged)
            moves.append(CORPUS_FOLDER)
            root = extracted  # the lists name where the corpus will be once moved into OUTDIR
    else:
        root = staged = find_corpus_root(args.source)
    root = root.absolute()

    utterances = read_metadata(staged)
    print(f"{len(utterances)} utterances in {root / 'metadata.csv'}")
    report = _scan_with_progress([u.wav_path for u in utterances], LJSPEECH_SAMPLE_RATE)
    print(report.summary())
    report.raise_for_errors("wav files listed in metadata.csv")

    ids = [u.id for u in utterances]
    kwargs = {"seed": args.seed}
    if split == "random":
        kwargs.update(num_val=args.num_val or 100, num_test=args.num_test or 500)
    result = split_corpus(ids, split, **kwargs)
    for note in result.notes:
        print(f"note: {note}")
    for part, missing in result.absent.items():
        print(
            f"warning: {len(missing)} {part} id(s) of the {split} split are not in this corpus: "
            + ", ".join(missing[:_MAX_SHOWN])
            + (" ..." if len(missing) > _MAX_SHOWN else "")
        )
    empty = [part for part, chosen in result.parts().items() if not chosen]
    if empty:
        raise CLIError(
            f"the {split} split leaves the {' and '.join(empty)} part(s) empty on this corpus of {len(ids)} "
            "utterances; use --split random (with --num-val/--num-test) for a corpus that is not LJSpeech-1.1"
        )
    contamination = {
        part: check_contamination(result.train, chosen)
        for part, chosen in (("val", result.val), ("test", result.test))
    }
    for part, overlap in contamination.items():
        if overlap:
            print(
                f"warning: {len(overlap)} {part} utterance(s) are also in the training list: {', '.join(overlap[:_MAX_SHOWN])}"
            )
    heard_elsewhere = _test_in_other_training_parts(ids, split, result.test)
    for other, count in heard_elsewhere.items():
        if count:
            print(
                f"note: {count} of the {len(result.test)} test utterances are in the training part of the "
                f"{other} split; compare only with models that did not train on them"
            )

    wav_of = {u.id: (root / "wavs" / f"{u.id}.wav") for u in utterances}
    for part, chosen in result.parts().items():
        write_filelist(staging / f"{part}.txt", [wav_of[i] for i in chosen])
    summary = {
        "waveflow_version": __version__,
        "source": str(args.source.absolute()),
        "corpus": str(root),
        "num_utterances": len(ids),
        "split": split,
        "seed": args.seed if split == "random" else None,
        "sizes": {part: len(chosen) for part, chosen in result.parts().items()},
        "notes": list(result.notes),
        "absent_from_corpus": {part: list(missing) for part, missing in result.absent.items()},
        "train_overlap": {part: overlap for part, overlap in contamination.items()},
        "test_in_other_splits_training": heard_elsewhere,
        "scan": report.to_dict(),
    }
    (staging / "prepare_report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    sizes = summary["sizes"]
    print(
        f"{split} split: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test -> "
        f"{args.outdir}/{{train,val,test}}.txt"
    )
    return moves + list(_OUTPUTS)


class _ArchiveProgress:
    """``progress(phase, done, total)`` for :func:`~waveflow.data.ljspeech.extract_archive`: a tqdm
    bar per phase (checking the members, writing them), in bytes of the archive; none under ``-q``."""

    _DESCRIPTIONS = {"check": "checking archive", "extract": "extracting"}

    def __init__(self) -> None:
        self._bar = None
        self._phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        import sys

        from tqdm import tqdm

        from waveflow.cli._inputs import progress_disabled

        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = tqdm(
                total=total,
                desc=self._DESCRIPTIONS.get(phase, phase),
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                disable=progress_disabled(),
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> _ArchiveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scan_with_progress(paths: list[Path], sample_rate: int, chunk: int = 256) -> ScanReport:
    """:func:`~waveflow.data.scan_audio` (decoding every file) in chunks of ``chunk`` files, with a
    tqdm bar over the files (none under ``-q``); one report for all of them, in ``paths`` order."""
    import sys

    from tqdm import tqdm

    from waveflow.cli._inputs import progress_disabled
    from waveflow.data import ScanReport, scan_audio

    report = ScanReport(sample_rate=sample_rate, resample=False, decoded=True, files=list(paths))
    with tqdm(
        total=len(paths), desc="checking wavs", unit="file", file=sys.stderr, disable=progress_disabled()
    ) as bar:
        for start in range(0, len(paths), chunk):
            part = scan_audio(paths[start : start + chunk], sample_rate, resample=False, decode=True)
            report.info.update(part.info)
            report.missing.extend(part.missing)
            report.unreadable.update(part.unreadable)
            bar.update(len(part.files))
    return report


def _test_in_other_training_parts(ids: list[str], split: str, test: tuple[str, ...]) -> dict[str, int]:
    """How many of the ``test`` ids each other named split (that applies to this corpus) trains on."""
    from waveflow.data import check_contamination, split_corpus

    counts = {}
    for other in ("nvidia", "espnet"):
        if other == split:
            continue
        other_split = split_corpus(ids, other)
        if other_split.val or other_split.test:  # the split applies to this corpus at all
            counts[other] = len(check_contamination(other_split.train, test))
    return counts
