"""Preparing LJSpeech-1.1 for training and evaluation: what ``waveflow prepare-ljspeech`` runs.

:func:`prepare_ljspeech` takes the corpus folder or its archive (extracted safely into the output
folder), checks the metadata and every wav, splits the corpus (:func:`~waveflow.data.ljspeech.split_corpus`)
and writes ``train.txt``, ``val.txt``, ``test.txt`` and ``prepare_report.json``. Everything is
produced in a staging folder beside the output folder and moved in at the end: an error leaves none
of the outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from waveflow import __version__
from waveflow.data.dataset import ScanReport, scan_audio
from waveflow.data.filelists import write_filelist
from waveflow.data.ljspeech import (
    CORPUS_FOLDER,
    LJSPEECH_SAMPLE_RATE,
    check_contamination,
    extract_archive,
    find_corpus_root,
    read_metadata,
    split_corpus,
)
from waveflow.errors import InputError

OUTPUTS = ("train.txt", "val.txt", "test.txt", "prepare_report.json")
_MAX_SHOWN = 20


def prepare_ljspeech(
    source: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    split: str | os.PathLike[str] = "nvidia",
    *,
    num_val: int = 100,
    num_test: int = 500,
    seed: int = 1234,
    log: Callable[[str], object] = print,
    disable_progress: bool | None = None,
) -> dict[str, Any]:
    """Check an LJSpeech-1.1 folder (or the folder above it) or archive, split it and write the file
    lists and the report into ``outdir``; return the report.

    ``split``: ``"nvidia"``, ``"espnet"``, ``"random"`` (``num_val``, ``num_test`` and ``seed`` apply
    to it only) or a folder of id lists. ``log`` receives the progress lines and warnings;
    ``disable_progress`` is tqdm's ``disable`` for the bars (``None``: only on a terminal). Bad
    audio, an unusable split or output folder raise ``ValueError`` (:class:`InputError`).
    """
    source, outdir, split = Path(source), Path(outdir), str(split)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} exists and is not a folder")
    with _staging(outdir) as staging:
        moves: list[str] = []
        if source.is_file():
            extracted = outdir / CORPUS_FOLDER
            if (extracted / "metadata.csv").is_file():
                log(f"using the corpus already extracted to {extracted}")
                root = staged = extracted
            elif extracted.exists():
                raise InputError(
                    f"{extracted} exists but holds no metadata.csv; remove it or choose another OUTDIR"
                )
            else:
                log(f"extracting {source} ...")
                staged = staging / CORPUS_FOLDER
                with _ArchiveProgress(disable_progress) as progress:
                    os.replace(extract_archive(source, staging / "extract", progress=progress), staged)
                moves.append(CORPUS_FOLDER)
                root = extracted  # the lists name where the corpus will be once moved into OUTDIR
        else:
            root = staged = find_corpus_root(source)
        root = root.absolute()

        utterances = read_metadata(staged)
        log(f"{len(utterances)} utterances in {root / 'metadata.csv'}")
        report = _scan_with_progress(
            [u.wav_path for u in utterances], LJSPEECH_SAMPLE_RATE, disable_progress=disable_progress
        )
        log(report.summary())
        report.raise_for_errors("wav files listed in metadata.csv")

        ids = [u.id for u in utterances]
        result = split_corpus(ids, split, num_val=num_val, num_test=num_test, seed=seed)
        for note in result.notes:
            log(f"note: {note}")
        for part, missing in result.absent.items():
            log(
                f"warning: {len(missing)} {part} id(s) of the {split} split are not in this corpus: "
                + ", ".join(missing[:_MAX_SHOWN])
                + (" ..." if len(missing) > _MAX_SHOWN else "")
            )
        empty = [part for part, chosen in result.parts().items() if not chosen]
        if empty:
            raise InputError(
                f"the {split} split leaves the {' and '.join(empty)} part(s) empty on this corpus of {len(ids)} "
                "utterances; use --split random (with --num-val/--num-test) for a corpus that is not LJSpeech-1.1"
            )
        contamination = {
            part: check_contamination(result.train, chosen)
            for part, chosen in (("val", result.val), ("test", result.test))
        }
        for part, overlap in contamination.items():
            if overlap:
                log(
                    f"warning: {len(overlap)} {part} utterance(s) are also in the training list: {', '.join(overlap[:_MAX_SHOWN])}"
                )
        heard_elsewhere = _test_in_other_training_parts(ids, split, result.test)
        for other, count in heard_elsewhere.items():
            if count:
                log(
                    f"note: {count} of the {len(result.test)} test utterances are in the training part of the "
                    f"{other} split; compare only with models that did not train on them"
                )

        wav_of = {u.id: (root / "wavs" / f"{u.id}.wav") for u in utterances}
        for part, chosen in result.parts().items():
            write_filelist(staging / f"{part}.txt", [wav_of[i] for i in chosen])
        summary = {
            "waveflow_version": __version__,
            "source": str(source.absolute()),
            "corpus": str(root),
            "num_utterances": len(ids),
            "split": split,
            "seed": seed if split == "random" else None,
            "sizes": {part: len(chosen) for part, chosen in result.parts().items()},
            "notes": list(result.notes),
            "absent_from_corpus": {part: list(missing) for part, missing in result.absent.items()},
            "train_overlap": {part: overlap for part, overlap in contamination.items()},
            "test_in_other_splits_training": heard_elsewhere,
            "scan": report.to_dict(),
        }
        (staging / "prepare_report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        sizes = summary["sizes"]
        log(
            f"{split} split: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test -> "
            f"{outdir}/{{train,val,test}}.txt"
        )
        outdir.mkdir(exist_ok=True)
        for name in [*moves, *OUTPUTS]:
            os.replace(staging / name, outdir / name)
    return summary


@contextlib.contextmanager
def _staging(outdir: Path) -> Iterator[Path]:
    """A new folder beside ``outdir`` (created with its parents), removed with what is left in it."""
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.prepare-", dir=outdir.parent))
    try:
        yield staging
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


class _ArchiveProgress:
    """``progress(phase, done, total)`` for :func:`~waveflow.data.ljspeech.extract_archive`: a tqdm
    bar per phase (checking the members, writing them), in bytes of the archive."""

    _DESCRIPTIONS = {"check": "checking archive", "extract": "extracting"}

    def __init__(self, disable: bool | None = None) -> None:
        self._bar: tqdm | None = None
        self._phase = ""
        self._disable = disable

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self.close()
            self._phase = phase
            description = self._DESCRIPTIONS.get(phase, phase)
            self._bar = tqdm(
                total=total,
                desc=description,
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                disable=self._disable,
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


def _scan_with_progress(
    paths: list[Path], sample_rate: int, *, chunk: int = 256, disable_progress: bool | None = None
) -> ScanReport:
    """:func:`~waveflow.data.scan_audio` (decoding every file) in chunks of ``chunk`` files, with a
    tqdm bar over the files; one report for all of them, in ``paths`` order."""
    report = ScanReport(sample_rate=sample_rate, resample=False, decoded=True, files=list(paths))
    with tqdm(
        total=len(paths), desc="checking wavs", unit="file", file=sys.stderr, disable=disable_progress
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
    counts = {}
    for other in ("nvidia", "espnet"):
        if other == split:
            continue
        other_split = split_corpus(ids, other)
        if other_split.val or other_split.test:  # the split applies to this corpus at all
            counts[other] = len(check_contamination(other_split.train, test))
    return counts
