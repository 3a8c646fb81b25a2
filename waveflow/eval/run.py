"""Evaluating a vocoder on reference recordings, file by file: what ``waveflow evaluate`` runs.

:func:`evaluate_files` scores ``generated_dir/<stem>.wav`` (and, optionally, a Griffin-Lim inversion
of the reference's mel) against each reference with :func:`~waveflow.eval.metrics.compute_metrics`,
adds the model's NLL of the reference to every row and can draw one mel comparison per file;
:func:`summarize` aggregates the rows into the ``summary.json`` document, and
:func:`write_metrics_csv` and :func:`write_summary` write the two files atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from waveflow import __version__
from waveflow.audio.io import load_audio
from waveflow.errors import OutputError
from waveflow.eval import griffin_lim as gl
from waveflow.eval import metrics, plots
from waveflow.fileio import atomic_write_text

if TYPE_CHECKING:
    from waveflow.infer.vocoder import Vocoder

SYSTEMS = ("waveflow", "griffin_lim")
COLUMNS = ("file", "system", "num_samples", *metrics.METRIC_NAMES, "ref_nll_nats", "ref_nll_bits")
_PLOT_LABELS = {"waveflow": "waveflow", "griffin_lim": "Griffin-Lim"}
StrPath = str | os.PathLike[str]


def generated_path(generated_dir: StrPath, reference: StrPath) -> Path:
    """The vocoded version of ``reference``: ``generated_dir/<stem>.wav``."""
    return Path(generated_dir) / f"{Path(reference).stem}.wav"


def _load(path: StrPath, sample_rate: int, notice: Callable[[str], object], to: str = "") -> np.ndarray:
    audio, file_rate = load_audio(path)
    if file_rate != sample_rate:
        notice(f"{path} is {file_rate} Hz; resampling to {to}{sample_rate} Hz")
        audio, _ = load_audio(path, sample_rate)
    return audio


def _mel(vocoder: Vocoder, audio: np.ndarray) -> np.ndarray:
    """The checkpoint's log-mel of ``audio`` (T,) -> float32 ``(n_mels, frames)``."""
    mel = vocoder.mel(audio, vocoder.sample_rate).detach().to("cpu", torch.float32)
    return mel.numpy().reshape(vocoder.n_mels, -1)


def evaluate_file(
    vocoder: Vocoder,
    reference: StrPath,
    generated: StrPath,
    *,
    griffin_lim: bool = True,
    griffin_lim_iters: int = gl.DEFAULT_N_ITER,
    plot: StrPath | None = None,
    notice: Callable[[str], object] = warnings.warn,
) -> list[dict[str, Any]]:
    """Rows (``waveflow``, then ``griffin_lim``) comparing each system with ``reference``, read at the
    vocoder's rate (``notice`` says when a file is resampled) and trimmed to the shorter length;
    with ``plot``, also :func:`plot_mels` there. An unreadable file raises ``ValueError``."""
    sample_rate, stem = vocoder.sample_rate, Path(reference).stem
    audio = _load(reference, sample_rate, notice, "the checkpoint's ")
    estimates = {"waveflow": _load(generated, sample_rate, notice)}
    scores = vocoder.score(audio, sample_rate)
    if griffin_lim:
        estimates["griffin_lim"] = gl.griffin_lim(
            _mel(vocoder, audio), vocoder.mel_config, n_iter=griffin_lim_iters
        )
    nll = {"ref_nll_nats": float(scores["nats_per_sample"]), "ref_nll_bits": float(scores["bits_per_sample"])}
    rows = []
    for system, estimate in estimates.items():
        ref, est = metrics.align(audio, estimate)
        row = {"file": stem, "system": system, "num_samples": ref.shape[0]}
        rows.append({**row, **metrics.compute_metrics(ref, est, sample_rate), **nll})
    if plot is not None:
        plot_mels(vocoder, audio, estimates, plot, title=stem)
    return rows


def evaluate_files(
    vocoder: Vocoder,
    references: Iterable[StrPath],
    generated_dir: StrPath,
    *,
    plots_dir: StrPath | None = None,
    disable_progress: bool | None = None,
    **options: Any,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """:func:`evaluate_file` (``options``) of each reference and its :func:`generated_path`, with
    ``plots_dir/<stem>.png`` -> ``(rows, failed)``: ``(reference, reason)`` of the files that raised
    ``ValueError``. ``disable_progress``: tqdm's ``disable`` (``None``: a bar only on a terminal)."""
    rows, failed = [], []
    for path in tqdm(references, desc="evaluate", unit="file", file=sys.stderr, disable=disable_progress):
        plot = None if plots_dir is None else Path(plots_dir) / f"{Path(path).stem}.png"
        try:
            rows.extend(
                evaluate_file(vocoder, path, generated_path(generated_dir, path), plot=plot, **options)
            )
        except ValueError as exc:
            failed.append((Path(path), str(exc)))
    return rows, failed


def plot_mels(
    vocoder: Vocoder, reference: np.ndarray, estimates: dict[str, np.ndarray], target: StrPath, *, title: str
) -> None:
    """PNG ``target``: the checkpoint's log-mels of ``reference`` and of each system's audio (cut to
    the shortest) on one colour scale, and waveflow - reference. A failed write is an OutputError."""
    num_samples = min(reference.shape[0], *(audio.shape[0] for audio in estimates.values()))
    mels = {"reference": _mel(vocoder, reference[:num_samples])}
    for system, audio in estimates.items():
        mels[_PLOT_LABELS[system]] = _mel(vocoder, audio[:num_samples])
    figure = plots.mel_comparison_figure(
        mels,
        difference=("waveflow", "reference"),
        sample_rate=vocoder.sample_rate,
        hop_length=vocoder.hop_length,
        title=title,
    )
    try:
        plots.save_png(figure, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or str(exc) or type(exc).__name__}") from exc


def summarize(
    rows: Sequence[dict[str, Any]],
    vocoder: Vocoder,
    *,
    checkpoint: StrPath,
    generated_dir: StrPath,
    num_references: int,
    failed: Iterable[tuple[Path, str]] = (),
    clipped_samples: dict[str, int] | None = None,
    plots_dir: StrPath | None = None,
    griffin_lim: bool = True,
    griffin_lim_iters: int = gl.DEFAULT_N_ITER,
    synthesized_missing: int = 0,
) -> dict[str, Any]:
    """The ``summary.json`` document: per system and metric the mean over finite values and their
    count, the reference NLL likewise, the failures, the clipped samples of the files synthesized
    for the run (``{path: count}``) and the settings. Means without a finite value are NaN."""

    def mean(values: list[float]) -> dict[str, float | int]:
        return dict(zip(("mean", "count"), metrics.finite_mean(values)))

    systems = SYSTEMS if griffin_lim else SYSTEMS[:1]
    first_rows = [r for r in rows if r["system"] == "waveflow"]
    return {
        "checkpoint": str(checkpoint),
        "generated_dir": str(generated_dir),
        "num_references": num_references,
        "num_evaluated": len(first_rows),
        "systems": {
            system: {
                name: mean([r[name] for r in rows if r["system"] == system]) for name in metrics.METRIC_NAMES
            }
            for system in systems
        },
        "reference_nll_per_sample": {
            unit: mean([r[f"ref_nll_{unit}"] for r in first_rows]) for unit in ("nats", "bits")
        },
        "failed": [{"path": str(p), "reason": r} for p, r in failed],
        "clipped_samples": dict(clipped_samples or {}),
        "plots_dir": str(plots_dir) if plots_dir is not None else None,
        "config": {
            "waveflow_version": __version__,
            "sample_rate": vocoder.sample_rate,
            "mel_config": vocoder.mel_config.to_dict(),
            "length_alignment": "trim both to the shorter",
            "pesq": f"wideband (P.862.2) at {metrics.PESQ_SAMPLE_RATE} Hz",
            "stoi": "classic (not extended)",
            "mrstft_resolutions": [
                {"n_fft": n, "hop_length": h, "win_length": w} for n, h, w in metrics.MRSTFT_RESOLUTIONS
            ],
            "mrstft": "spectral convergence + mean |ln S_ref - ln S_est|, averaged over resolutions",
            "mel_l1": "mean |ln mel| difference, Tacotron2 convention (80 Slaney mels, 0-8000 Hz, floor 1e-5)",
            "f0": "pYIN 65.4-1046.5 Hz; RMSE in cents on frames voiced in both; voicing decision error rate",
            "griffin_lim": {"enabled": bool(griffin_lim), "n_iter": griffin_lim_iters, "random_state": 0},
            "synthesized_missing": synthesized_missing,
        },
    }


def write_metrics_csv(path: StrPath, rows: Iterable[dict[str, Any]]) -> Path:
    """``rows`` as CSV (a header of :data:`COLUMNS`, one line per file and system), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def write_summary(path: StrPath, summary: dict[str, Any]) -> Path:
    """``summary`` as indented JSON with NaN/Inf as ``null`` (they are not JSON), atomically."""
    text = json.dumps(json.loads(json.dumps(summary), parse_constant=lambda _: None), indent=2)
    return atomic_write_text(path, text + "\n")
