"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never a partial one.

The data goes to a temporary file in the destination folder (``.<name>.<random>.tmp``), which is
flushed and fsync'ed, then renamed over the destination; the folder is fsync'ed so the rename
survives a power cut. Any exception, or a kill, leaves at most the temporary file behind, and
never a truncated destination.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary binary file next to ``path`` and rename it over ``path``."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent} (for {path.name})")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file")
    tmp = parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # Mode 0o666 lets the umask decide the permissions, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))
