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

A write that fails (a full disk, a permission changed under the run) raises
:class:`~waveflow.errors.OutputError` naming the file and the cause (:func:`writing`); the files
written before stay as they were, so ``--resume`` continues from the last complete checkpoint.
Pruning (``train.keep_last``) deletes only step checkpoints older than the one just written, never
that one, never a newer step file (one the run has not written: a resume skipped it as unreadable)
and never a file it is told to keep.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

from waveflow.errors import OutputError

_STEP_FILE = re.compile(r"^ckpt_(\d{8,})\.pt$")


def _os_error_in(exc: BaseException) -> OSError | None:
    """``exc`` if it is an OSError, else the first OSError it was raised from or while handling.

    torch's zip writer reports a failed write as a ``RuntimeError`` ("PytorchStreamWriter failed
    writing file ...", "unexpected pos ...") raised while handling the file object's ``OSError``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def output_error(path: str | os.PathLike[str], what: str, exc: BaseException) -> OutputError | None:
    """One-line :class:`OutputError` for a failed write of ``what`` at ``path`` ("cannot write
    checkpoint DIR/x.pt: no space left on device"), or ``None`` if ``exc`` is not an I/O failure."""
    cause = _os_error_in(exc)
    if cause is None:
        return None
    if isinstance(cause, OutputError):
        return cause  # already names its file
    reason = os.strerror(cause.errno).lower() if cause.errno else (str(cause) or type(cause).__name__)
    error = OutputError(f"cannot write {what} {path}: {reason}")
    error.errno = cause.errno  # callers may test for errno.ENOSPC
    return error


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn an I/O failure inside the block into :func:`output_error` (other errors pass unchanged)."""
    try:
        yield
    except Exception as exc:
        error = output_error(path, what, exc)
        if error is None or error is exc:
            raise
        raise error from exc


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
        """Checkpoints to resume from, newest first: the step files, then ``last.pt``, then ``best.pt``
        (a complete training checkpoint too: the last resort when the others cannot be read)."""
        candidates = [path for _, path in reversed(self.step_checkpoints())]
        candidates += [path for path in (self.last, self.best) if path.is_file()]
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

    def prune(self, keep_last: int, *, written: Path, keep: Collection[Path] = ()) -> list[Path]:
        """Delete the step checkpoints older than the newest ``keep_last`` up to ``written`` (the
        step file just written); returns the deleted paths.

        Step files newer than ``written`` are never deleted (this run has not written them: they
        are ones a resume skipped as unreadable), nor are the paths in ``keep``, nor ``written``.
        """
        match = _STEP_FILE.match(written.name)
        if match is None or written.parent != self.checkpoints:
            raise ValueError(f"{written} is not a step checkpoint of {self.root}")
        newest = int(match.group(1))
        mine = [path for step, path in self.step_checkpoints() if step <= newest]
        protected = set(keep) | {written}
        old = [path for path in mine[: max(0, len(mine) - keep_last)] if path not in protected]
        for path in old:
            path.unlink(missing_ok=True)
        return old
