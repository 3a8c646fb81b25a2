"""Corpora described by a ``manifest.jsonl`` (one JSON object per clip), selected by licence.

The layout is the one ``build_speech_corpus.sh`` writes (and any LJSpeech-style corpus can add)::

    CORPUS/{train,eval}/manifest.jsonl   {"id", "path", "speaker", "source", "licence", "seconds", ...}

A model that is to be shipped may only learn from clips whose licence allows redistributing a
derived work; :func:`select` keeps the clips whose licence starts with none of the excluded
prefixes (e.g. ``GPL``) and reports what it kept and dropped, per source and licence.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    source: str
    licence: str
    seconds: float
    speaker: str = ""


def read_manifest(path: str | os.PathLike[str]) -> list[Clip]:
    """Clips of a ``manifest.jsonl``; relative paths are resolved against the manifest's folder.

    Raises ``ValueError`` naming the line of a malformed or incomplete entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    clips = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            audio = Path(entry["path"])
            clips.append(
                Clip(
                    id=str(entry["id"]),
                    path=audio if audio.is_absolute() else path.parent / audio,
                    source=str(entry.get("source", "")),
                    licence=str(entry["licence"]),
                    seconds=float(entry.get("seconds", 0.0)),
                    speaker=str(entry.get("speaker", "")),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}:{number}: not a manifest entry with id, path and licence ({exc})"
            ) from None
    return clips


@dataclass(frozen=True)
class Selection:
    kept: list[Clip]
    dropped: list[Clip]

    def summary(self) -> dict[str, dict[str, float | int | bool]]:
        """Per ``source | licence``: clips, minutes, kept."""
        out: dict[str, dict[str, float | int | bool]] = {}
        for kept, clips in ((True, self.kept), (False, self.dropped)):
            for clip in clips:
                row = out.setdefault(
                    f"{clip.source} | {clip.licence}", {"clips": 0, "minutes": 0.0, "kept": kept}
                )
                row["clips"] = int(row["clips"]) + 1
                row["minutes"] = round(float(row["minutes"]) + clip.seconds / 60, 3)
        return out


def select(clips: Sequence[Clip], exclude_licences: Sequence[str]) -> Selection:
    """Keep the clips whose licence starts with none of ``exclude_licences`` (case-insensitive)."""
    prefixes = tuple(p.lower() for p in exclude_licences)
    kept = [c for c in clips if not c.licence.lower().startswith(prefixes)] if prefixes else list(clips)
    dropped = [c for c in clips if c not in kept]
    return Selection(kept, dropped)
