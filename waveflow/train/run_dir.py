"""The files of one training run, and the rules that keep them consistent.

::

    DIR/config.yaml              the resolved ExperimentConfig (rewritten on resume)
    DIR/train_log.jsonl          metrics, one JSON object per line (appended on resume)
    DIR/tensorboard/             TensorBoard events, when tensorboard is installed
    DIR/checkpoints/ckpt_{step:08d}.pt   the last ``keep_last`` periodic checkpoints
    DIR/checkpoints/last.pt      the newest periodic/final checkpoint
    DIR/checkpoints/best.pt      the checkpoint with the lowest validation NLL

Every checkpoint is written atomically (temporary file, fsync, rename; see
:func:`waveflow.checkpoint.atomic_torch_save`), and ``last.pt``/``best.pt`` are hard links (or,
where the file system has none, atomic copies) swapped in by rename, so each name always refers to
a complete file. A process killed while writing leaves only a hidden ``.*.tmp`` file, which
:meth:`RunDir.remove_partial_files` deletes on resume.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

_STEP_FILE = re.compile(r"^ckpt_(\d{8,})\.pt$")


class RunDir:
    """Paths and checkpoint bookkeeping of a run directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.config = self.root / "config.yaml"
        self.log = self.root / "train_log.jsonl"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"ckpt_{step:08d}.pt"

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every ``ckpt_*.pt``, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for path in self.checkpoints.iterdir():
            match = _STEP_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def resume_candidates(self) -> list[Path]:
        """Checkpoints to resume from, newest first: the step files, then ``last.pt``."""
        candidates = [path for _, path in reversed(self.step_checkpoints())]
        if self.last.is_file():
            candidates.append(self.last)
        return candidates

    def holds_run(self) -> bool:
        """True if a run has been started here (config, log or checkpoints exist)."""
        return self.config.exists() or self.log.exists() or bool(self.resume_candidates())

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def remove_partial_files(self) -> list[Path]:
        """Delete temporary files left by a write that was killed; returns what was removed."""
        if not self.checkpoints.is_dir():
            return []
        removed = [
            p for p in self.checkpoints.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
        ]
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def point(self, name: Path, target: Path) -> None:
        """Make ``name`` (``last``/``best``) refer to the complete file ``target``, atomically."""
        tmp = name.parent / f".{name.name}.{uuid.uuid4().hex}.tmp"
        try:
            try:
                os.link(target, tmp)
            except OSError:  # no hard links here (some network/FAT file systems): copy instead
                shutil.copyfile(target, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def prune(self, keep_last: int) -> list[Path]:
        """Delete all but the newest ``keep_last`` step checkpoints; returns the deleted paths."""
        old = [path for _, path in self.step_checkpoints()[:-keep_last]]
        for path in old:
            path.unlink(missing_ok=True)
        return old
