"""Pictures: mel spectrograms of reference and vocoded speech side by side, and training curves.

* :func:`mel_comparison_figure` - the log-mels of a reference and of its vocoded versions, stacked
  on ONE colour scale (:func:`mel_color_range`: the same value is the same colour in every panel),
  and the difference of one system from the reference on a diverging colour map centred on 0
  (:func:`difference_limit`), red where the system has more energy than the reference, blue less.
  ``waveflow evaluate --plots`` writes one per utterance.
* :func:`read_train_log` and :func:`training_curves_figure` - the training and validation NLL, the
  auxiliary losses, the learning rate and the gradient norm from a run's ``train_log.jsonl``,
  against steps or CPU-minutes (``waveflow plot-log``).

matplotlib is optional (``pip install 'waveflow[plot]'``) and imported only when a figure is made;
without it :func:`require_matplotlib` raises an :class:`~waveflow.errors.InputError` saying how to
install it. Figures are drawn by the Agg canvas directly (``matplotlib.figure.Figure``, not
``pyplot``): nothing needs a display, and the backend of a user's own session is left alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from waveflow.errors import InputError
from waveflow.fileio import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'waveflow[plot]'"
MEL_CMAP = "magma"
DIFFERENCE_CMAP = "RdBu_r"  # diverging: blue below 0, white at 0, red above
TRAIN_LOG = "train_log.jsonl"
X_AXES = ("step", "cpu-minutes")


def require_matplotlib() -> None:
    """Raise :class:`InputError` with the install command unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg whatever pyplot's backend is
    return figure


def save_png(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Write ``figure`` to ``path`` as PNG, atomically (the folder must exist)."""
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=dpi))


# -- mel spectrograms ------------------------------------------------------------------------------
def mel_color_range(mels: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(vmin, vmax)`` shared by all ``mels``: the smallest and largest finite value over all of them.

    A constant input gets a range of width 1 around its value (a colour scale needs ``vmin < vmax``).
    """
    finite = [np.asarray(m, dtype=np.float64) for m in mels]
    finite = [m[np.isfinite(m)] for m in finite]
    finite = [m for m in finite if m.size]
    if not finite:
        raise ValueError("no finite mel values to plot")
    low = float(min(m.min() for m in finite))
    high = float(max(m.max() for m in finite))
    if high <= low:
        return low - 0.5, low + 0.5
    return low, high


def difference_limit(difference: np.ndarray) -> float:
    """``L`` for a diverging scale ``[-L, L]`` centred on 0: the largest finite ``|difference|``."""
    values = np.abs(np.asarray(difference, dtype=np.float64))
    values = values[np.isfinite(values)]
    limit = float(values.max()) if values.size else 0.0
    return limit if limit > 0 else 1.0


def mel_comparison_figure(
    mels: Mapping[str, np.ndarray],
    *,
    difference: tuple[str, str] | None,
    sample_rate: int,
    hop_length: int,
    title: str = "",
) -> Figure:
    """Stacked panels of ``mels`` (label -> log-mel ``(n_mels, frames)``, in order) on one colour
    scale, then ``difference = (system, reference)``: ``mels[system] - mels[reference]`` on a
    diverging scale centred on 0 (``None``: no difference panel).

    Mels of unequal length are cut to the shortest (the vocoder gives a few samples more than the
    recording). The time axis is in seconds (``frames * hop_length / sample_rate``).
    """
    if not mels:
        raise ValueError("no mels to plot")
    arrays = {label: np.asarray(mel, dtype=np.float64) for label, mel in mels.items()}
    shapes = {label: a.shape for label, a in arrays.items()}
    if any(a.ndim != 2 for a in arrays.values()) or len({s[0] for s in shapes.values()}) != 1:
        raise ValueError(f"mels must all be (n_mels, frames) with the same n_mels, got {shapes}")
    frames = min(a.shape[1] for a in arrays.values())
    if frames < 1:
        raise ValueError(f"a mel has no frames: {shapes}")
    arrays = {label: a[:, :frames] for label, a in arrays.items()}
    if difference is not None:
        missing = [label for label in difference if label not in arrays]
        if missing:
            raise ValueError(f"difference names {missing}, not among the mels {list(arrays)}")
    vmin, vmax = mel_color_range(list(arrays.values()))
    n_mels = next(iter(arrays.values())).shape[0]
    extent = (0.0, frames * hop_length / sample_rate, 0.0, float(n_mels))
    num_panels = len(arrays) + (difference is not None)
    figure = _figure(10.0, 1.0 + 2.0 * num_panels)
    axes = figure.subplots(num_panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, mel) in zip(axes, arrays.items()):
        image = ax.imshow(
            mel,
            origin="lower",
            aspect="auto",
            cmap=MEL_CMAP,
            vmin=vmin,
            vmax=vmax,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_title(label, loc="left", fontsize=10)
        ax.set_ylabel("mel bin")
        figure.colorbar(image, ax=ax, label="log mel", pad=0.01)
    if difference is not None:
        system, reference = difference
        diff = arrays[system] - arrays[reference]
        limit = difference_limit(diff)
        ax = axes[-1]
        image = ax.imshow(
            diff,
            origin="lower",
            aspect="auto",
            cmap=DIFFERENCE_CMAP,
            vmin=-limit,
            vmax=limit,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_title(f"{system} - {reference}", loc="left", fontsize=10)
        ax.set_ylabel("mel bin")
        figure.colorbar(image, ax=ax, label="log mel difference", pad=0.01)
    axes[-1].set_xlabel("time (s)")
    if title:
        figure.suptitle(title)
    return figure


# -- training curves ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainLog:
    """The ``train`` and ``val`` records of a ``train_log.jsonl``, by step (the last record of each
    step, as a resumed run appends to the same file), in step order."""

    path: Path
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]

    def series(self, event: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of ``key`` in the ``event`` records that have it; NaN where non-finite."""
        records = self.train if event == "train" else self.val
        rows = [(r["step"], _number(r[key])) for r in records if r.get(key) is not None]
        steps = np.array([s for s, _ in rows], dtype=np.float64)
        return steps, np.array([v for _, v in rows], dtype=np.float64)


def _number(value: Any) -> float:
    """A logged number; non-finite values are logged as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_train_log(path: str | os.PathLike[str]) -> TrainLog:
    """Read ``path`` (a run folder or its ``train_log.jsonl``).

    Raises ``FileNotFoundError`` when there is no log, and :class:`InputError` naming the line for a
    line that is not a JSON object or a ``train``/``val`` record without an integer ``step``, and
    when the log holds no ``train`` record. A last line without its newline (a record being
    written, or cut by a crash) is skipped.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TRAIN_LOG
    if not path.is_file():
        raise FileNotFoundError(f"training log not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    by_step: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "val": {}}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: still being written
                continue
            raise InputError(f"{path}, line {number}: not a JSON record ({exc.msg}): {line[:60]!r}") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        event = record.get("event")
        if event in by_step:
            step = record.get("step")
            if isinstance(step, bool) or not isinstance(step, int):
                raise InputError(f"{path}, line {number}: a {event!r} record without an integer 'step'")
            by_step[event][step] = record
    if not by_step["train"]:
        raise InputError(
            f'{path} holds no training records (lines with "event": "train"); '
            "is it the train_log.jsonl of a waveflow run that has logged a step?"
        )
    return TrainLog(
        path,
        train=[by_step["train"][s] for s in sorted(by_step["train"])],
        val=[by_step["val"][s] for s in sorted(by_step["val"])],
    )


def _cpu_minutes(log: TrainLog, steps: np.ndarray) -> np.ndarray:
    """CPU-minutes at ``steps``, interpolated between the steps whose ``cpu_s`` was logged (and
    step 0, where a run has used none: the validation before the first step)."""
    known_steps, cpu_s = log.series("train", "cpu_s")
    keep = np.isfinite(cpu_s)
    if not keep.any():
        raise InputError(
            f"{log.path} has no CPU times (cpu_s) in its training records (written by older versions); "
            "plot against steps instead (--x step)"
        )
    known_steps, cpu_s = np.concatenate([[0.0], known_steps[keep]]), np.concatenate([[0.0], cpu_s[keep]])
    return np.interp(steps, known_steps, cpu_s) / 60.0


def training_curves_figure(log: TrainLog, *, x: str = "step") -> Figure:
    """Panels sharing one x axis (``"step"`` or ``"cpu-minutes"``): training NLL (``nll``, or
    ``loss``) with the validation NLL, then each of the auxiliary loss, the F0 predictor's loss, the
    learning rate and the gradient norm that the log holds. NLLs are in nats per audio sample."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {X_AXES}, got {x!r}")
    key = "nll" if any(r.get("nll") is not None for r in log.train) else "loss"
    curves = [("NLL (nats/sample)", [("train", key, "train"), ("val", "val_nll", "validation")], False)]
    for event, name, label, log_scale in (
        ("train", "aux_loss", "auxiliary loss", False),
        ("train", "f0_loss", "F0 predictor loss", False),
        ("train", "lr", "learning rate", False),
        ("train", "grad_norm", "gradient norm", True),
    ):
        if np.isfinite(log.series(event, name)[1]).any():
            curves.append((label, [(event, name, label)], log_scale))

    figure = _figure(9.0, 0.8 + 2.2 * len(curves))
    axes = figure.subplots(len(curves), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, lines, log_scale) in zip(axes, curves):
        for event, name, label in lines:
            steps, values = log.series(event, name)
            if steps.size == 0:
                continue
            where = steps if x == "step" else _cpu_minutes(log, steps)
            style = {"marker": "o", "markersize": 3} if event == "val" else {"linewidth": 1.0}
            ax.plot(where, values, label=label, **style)
        ax.set_ylabel(ylabel)
        if log_scale and np.nanmin(log.series("train", lines[0][1])[1]) > 0:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if len(lines) > 1:
            ax.legend(loc="upper right")
    axes[-1].set_xlabel("step" if x == "step" else "CPU-minutes")
    figure.suptitle(str(log.path.parent.name or log.path), fontsize=10)
    return figure
