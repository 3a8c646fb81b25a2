"""Models that ship inside the package, by name.

``waveflow.Vocoder.from_pretrained()`` loads the default model; ``from_pretrained(NAME)`` a
registered one; ``waveflow pretrained`` lists them, and every command that takes a checkpoint
also takes a registered name. The files lie beside this module (package data): nothing is
downloaded. Each model has a model card (``MODEL_CARD_<name>.md``) with its sources, licences,
training command and measured quality.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = "default"


@dataclass(frozen=True)
class PretrainedModel:
    """One registered model: ``file`` lies in this package; ``sha256`` of that file."""

    name: str
    file: str
    sha256: str
    description: str
    licence: str
    card: str

    @property
    def path(self) -> Path:
        return HERE / self.file


_MODELS = (
    PretrainedModel(
        name="compact-speech-v1",
        file="compact_speech_v1.pt",
        sha256="af78ee67618258ae6db48c171c17b5a0b061f7e18a5497865a793d84c8eea9b2",
        description="compact flow (5.1 M parameters, frame-rate conditioning) trained on CPUs on "
        "~29 minutes of multi-speaker, multi-lingual speech at 22.05 kHz, Tacotron2 mels",
        licence="CC-BY-SA-3.0 (derived from CC-BY-SA-3.0, CC-BY-3.0, BSD-like and CC0 recordings)",
        card="MODEL_CARD_compact-speech-v1.md",
    ),
)
ALIASES = {DEFAULT: "compact-speech-v1"}
REGISTRY: dict[str, PretrainedModel] = {m.name: m for m in _MODELS}

# A short public-domain recording to try the models on (LibriVox, "Sense and Sensibility", an
# English speaker none of the models was trained on; via CMU Sphinx's test data).
SAMPLE_CLIP = HERE / "sample_librivox.flac"


def names() -> list[str]:
    """Registered names, aliases included."""
    return sorted(REGISTRY) + sorted(ALIASES)


def get(name: str) -> PretrainedModel:
    """The registered model called ``name`` (or an alias of one); ``ValueError`` naming the choices."""
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise ValueError(f"no pretrained model called {name!r}; registered: {', '.join(names())}")
    return REGISTRY[key]


def is_registered(name: str) -> bool:
    return name in REGISTRY or name in ALIASES


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(name: str, *, verify: bool = True) -> Path:
    """The file of a registered model, checked against its recorded sha256."""
    model = get(name)
    path = model.path
    if not path.is_file():
        raise FileNotFoundError(f"pretrained model {model.name!r}: {path} is missing from this installation")
    if verify and model.sha256 and sha256_of(path) != model.sha256:
        raise ValueError(
            f"pretrained model {model.name!r}: {path} does not match its recorded sha256 (corrupt install?)"
        )
    return path
