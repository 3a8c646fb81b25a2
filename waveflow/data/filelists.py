"""File lists: which audio files a training run or an evaluation reads.

Format, one entry per line::

    /abs/path/LJ001-0001.wav
    wavs/LJ001-0002.wav|Optional transcript (NVIDIA's path|text format; the text is ignored)
    # comments and blank lines are ignored

A relative path is resolved against the folder that holds the list, never against the current
folder, so a list means the same files wherever the command runs. :func:`write_filelist` writes
absolute paths, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from waveflow.fileio import atomic_write_text


def read_filelist(path: str | os.PathLike[str]) -> list[Path]:
    """Audio paths listed in ``path``, in order, resolved against the list's folder.

    Raises ``FileNotFoundError`` if the list does not exist and ``ValueError`` naming the list and
    the line number for a malformed line (an empty path before ``|``, or an entry without a file
    extension, such as the bare utterance ids of HiFi-GAN's ``training.txt``), or if the list names
    no files at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file list not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a UTF-8 text file list: {exc}") from exc
    folder = path.resolve().parent
    files: list[Path] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entry = stripped.split("|", 1)[0].strip()
        if not entry:
            raise ValueError(f"{path}, line {number}: no audio path before '|': {line!r}")
        candidate = Path(entry).expanduser()
        if not candidate.suffix:
            raise ValueError(
                f"{path}, line {number}: {entry!r} is not an audio file path (no extension); "
                "a file list names audio files, one per line (ids alone are not enough)"
            )
        files.append(candidate if candidate.is_absolute() else folder / candidate)
    if not files:
        raise ValueError(f"file list {path} names no files")
    return files


def write_filelist(path: str | os.PathLike[str], files: Iterable[str | os.PathLike[str]]) -> None:
    """Write ``files`` to ``path`` as absolute paths, one per line, atomically (temp file + rename).

    Raises ``ValueError`` for a path that the format cannot hold (one containing a newline or ``|``).
    """
    path = Path(path)
    lines = []
    for file in files:
        absolute = Path(file).expanduser().absolute()
        text = str(absolute)
        if "\n" in text or "\r" in text or "|" in text:
            raise ValueError(f"cannot write {text!r} to a file list: paths may not contain newlines or '|'")
        lines.append(text + "\n")
    atomic_write_text(path, "".join(lines))
