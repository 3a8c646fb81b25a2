"""Where training metrics go: a JSONL file always, TensorBoard when installed, a tqdm bar.

Only rank 0 logs; on other ranks a :class:`RunLogger` is created with ``enabled=False`` and every
method does nothing, so the loop calls it without checking the rank.

``train_log.jsonl`` has one JSON object per line, each with ``event`` and ``time`` (Unix seconds):

* ``start``: ``step`` (0, or the step resumed from), ``resumed_from`` (checkpoint path or null),
  ``world_size``, ``device``, ``precision``, ``num_parameters``.
* ``train`` (every ``log_every`` steps): ``step``, ``epoch``, ``loss`` (the objective: mean NLL in
  nats per audio sample over the good steps since the last record), ``nll`` (same number),
  ``nvidia_loss`` (NVIDIA's ``WaveGlowLoss`` convention, without the Gaussian constant), ``lr``,
  ``grad_norm`` (before clipping), ``samples_per_s`` (audio samples per second, all ranks),
  ``skipped`` (steps skipped as non-finite since the last record), ``skipped_total``,
  ``bad_batches_total`` (batches with NaN/Inf audio, in total).
* ``val``: ``step``, ``val_nll`` (nats/sample over the whole validation set), ``val_nvidia_loss``,
  ``val_num_samples``, ``best_val_nll``.
* ``checkpoint``: ``step``, ``path``, ``reason``.
* ``end``: ``step``, ``status`` (``completed``, ``interrupted`` or ``diverged``), and in distributed
  runs ``rank_param_sha256`` (one hash of all parameters per rank; they must be equal).

A resumed run appends to the same file; a reader keeps the last record of each step.

A write that fails (a full disk) raises :class:`~waveflow.errors.OutputError` naming
``train_log.jsonl`` or the TensorBoard folder and the cause. TensorBoard writes in a background
thread; its failure surfaces at the next TensorBoard call (or at :meth:`RunLogger.close`), and the
thread's own traceback is not printed.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from waveflow.train.run_dir import writing

_TENSORBOARD_THREAD = "_AsyncWriterThread"  # tensorboard's event writer thread (class name)


def _hide_writer_thread_errors(previous: Any) -> Any:
    """A ``threading.excepthook`` that stays silent for TensorBoard's writer thread: the writer
    re-raises the thread's error in the training thread, where it becomes one line."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ != _TENSORBOARD_THREAD:
            previous(args)

    return hook


def _json_number(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Rank-0 sink for training records (see the module docstring for the JSONL schema)."""

    def __init__(self, run_dir: Path, *, enabled: bool, total_steps: int, start_step: int):
        self.enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        self._bar = None
        self._previous_excepthook = None
        self.jsonl_path = run_dir / "train_log.jsonl"
        self.tensorboard_dir = run_dir / "tensorboard"
        if not enabled:
            return
        with writing(self.jsonl_path, "the training log"):
            self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            SummaryWriter = None  # noqa: N806 (optional dependency: pip install tensorboard)
        if SummaryWriter is not None:
            with writing(self.tensorboard_dir, "TensorBoard events in"):
                self._tensorboard = SummaryWriter(
                    log_dir=str(self.tensorboard_dir), purge_step=start_step or None
                )
            self._previous_excepthook = threading.excepthook  # restored by close()
            threading.excepthook = _hide_writer_thread_errors(threading.excepthook)
        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            # In a log file (batch jobs) a line every 30 s is enough.
            mininterval=0.5 if interactive else 30.0,
        )

    @property
    def has_tensorboard(self) -> bool:
        return self._tensorboard is not None

    def record(self, event: str, **fields: Any) -> None:
        """Append one JSONL record; numeric fields are also sent to TensorBoard as ``event/field``."""
        if self._jsonl is None:
            return
        line = {
            "event": event,
            "time": round(time.time(), 3),
            **{k: _json_number(v) for k, v in fields.items()},
        }
        with writing(self.jsonl_path, "the training log"):
            self._jsonl.write(json.dumps(line) + "\n")
            self._jsonl.flush()
        step = fields.get("step")
        if self._tensorboard is not None and event in ("train", "val") and step is not None:
            with writing(self.tensorboard_dir, "TensorBoard events in"):
                for key, value in fields.items():
                    if (
                        key not in ("step", "epoch")
                        and isinstance(value, (int, float))
                        and not isinstance(value, bool)
                    ):
                        self._tensorboard.add_scalar(f"{event}/{key}", value, step)

    def progress(self, step: int, **postfix: str) -> None:
        """Move the bar to ``step`` and show ``postfix`` (already formatted strings)."""
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)

    def message(self, text: str) -> None:
        """A line for the user, printed above the progress bar."""
        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    def audio(self, tag: str, audio: Tensor, sample_rate: int, step: int) -> None:
        """``audio (T,)`` in [-1, 1] to TensorBoard (clipped)."""
        if self._tensorboard is not None:
            with writing(self.tensorboard_dir, "TensorBoard events in"):
                self._tensorboard.add_audio(
                    tag, audio.detach().float().clamp(-1, 1).cpu(), step, sample_rate=sample_rate
                )

    def mel_images(self, mels: dict[str, Tensor], step: int) -> None:
        """Each ``tag: mel (n_mels, frames)`` as a greyscale image, low frequencies at the bottom.

        All of them share one grey scale (the smallest and largest finite value over all), so a
        generated mel and its target can be compared by eye: the same shade is the same value.
        """
        if self._tensorboard is None or not mels:
            return
        # row 0 = highest mel bin, as in a spectrogram plot
        images = {tag: mel.detach().float().cpu().flip(0) for tag, mel in mels.items()}
        finite = torch.cat([image[image.isfinite()] for image in images.values()])
        low, high = (finite.min(), finite.max()) if finite.numel() else (torch.tensor(0.0), torch.tensor(1.0))
        with writing(self.tensorboard_dir, "TensorBoard events in"):
            for tag, image in images.items():
                image = ((image - low) / (high - low).clamp_min(1e-8)).nan_to_num(0.0).clamp(0, 1)
                self._tensorboard.add_image(tag, image, step, dataformats="HW")  # [0, 1]

    def close(self) -> None:
        """Close every sink (each one even if another fails); then raise the first failure."""
        failures: list[BaseException] = []
        sinks = [
            (self._bar, None, ""),
            (self._tensorboard, self.tensorboard_dir, "TensorBoard events in"),
            (self._jsonl, self.jsonl_path, "the training log"),
        ]
        self._bar = self._tensorboard = self._jsonl = None
        for sink, path, what in sinks:
            if sink is None:
                continue
            try:
                if path is None:
                    sink.close()
                else:
                    with writing(path, what):
                        sink.close()
            except Exception as exc:
                failures.append(exc)
        if self._previous_excepthook is not None:
            threading.excepthook = self._previous_excepthook
            self._previous_excepthook = None
        if failures:
            raise failures[0]
