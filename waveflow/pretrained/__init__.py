"""Pretrained models by name: the ones shipped inside the package, and NVIDIA's, downloaded once.

``waveflow.Vocoder.from_pretrained()`` loads the default model; ``from_pretrained(NAME)`` a
registered one; ``waveflow pretrained`` lists the shipped ones, ``waveflow download`` the
downloadable ones, and every command that takes a checkpoint also takes a registered name.

* **Shipped** (:data:`REGISTRY`): the files lie beside this module (package data) and nothing is
  downloaded. Each has a model card (``MODEL_CARD_<name>.md``) with its sources, licences, training
  command and measured quality.
* **Downloaded** (:data:`DOWNLOADS`): NVIDIA's published WaveGlow checkpoints. The first use fetches
  the file into the cache folder (:func:`waveflow.pretrained.download.cache_dir`), checks it,
  converts it through the safe NVIDIA reader (no pickled code runs) and caches the converted
  waveflow checkpoint beside it; later uses load the converted file. See
  :mod:`waveflow.pretrained.download`.
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


@dataclass(frozen=True)
class DownloadableModel:
    """One registered model that is downloaded on first use rather than shipped.

    ``url`` is fetched with the standard library (``http``, ``https`` or ``file``) into
    ``<cache>/<name>/<filename>``. ``sha256`` and ``size`` (bytes) are checked when known; ``None``
    says the publisher gives neither, and ``verification`` says in words what is checked instead.
    ``source`` says where the URL is documented; ``page`` is the page to fetch the file from by hand.
    """

    name: str
    url: str
    filename: str
    sha256: str | None
    size: int | None
    description: str
    licence: str
    source: str
    page: str
    verification: str


_UNPUBLISHED_DIGEST = (
    "NVIDIA publishes no sha256 or byte size for this file, so neither is checked: the transfer must "
    "deliver the server's Content-Length, the safe reader must accept the file (format, every tensor "
    "against the config, finite weights), and the sha256 measured on the first download is recorded "
    "in the cache and checked on every later use"
)
_DOWNLOADS = (
    DownloadableModel(
        name="nvidia-waveglow-universal-v5",
        # Google Drive's direct-download endpoint for the file the README links; confirm=t asks Drive
        # to skip the page it shows instead of files too large for its virus scan (not tried from
        # here: no network; a page is refused with the manual-download advice).
        url="https://drive.usercontent.google.com/download?id=1rpK8CzAAirq9sWZhe9nlfvxMF1dRgFbF"
        "&export=download&confirm=t",
        filename="waveglow_256channels_universal_v5.pt",
        sha256=None,
        size=None,  # about 676 MB (NGC lists its copy as 644.48 MB); not published to the byte
        description="NVIDIA's published WaveGlow, the 'universal' v5 model (original NVIDIA/waveglow "
        "format: 12 flows, 8 WN layers of 256 channels, 87.7 M parameters), Tacotron2 mels at 22.05 kHz",
        licence="BSD-3-Clause (the NVIDIA/waveglow repository's licence; the file carries none of its own)",
        source="NVIDIA/waveglow README.md, 'Download our published model': "
        "https://drive.google.com/open?id=1rpK8CzAAirq9sWZhe9nlfvxMF1dRgFbF (also linked as "
        "waveglow_256channels_universal_v5.pt by a maintainer in NVIDIA/waveglow issue #204)",
        page="https://drive.google.com/file/d/1rpK8CzAAirq9sWZhe9nlfvxMF1dRgFbF/view "
        "(NGC mirror: https://catalog.ngc.nvidia.com/orgs/nvidia/teams/adlr/models/waveglow)",
        verification=_UNPUBLISHED_DIGEST,
    ),
    DownloadableModel(
        name="nvidia-waveglow-dle-fp32",
        url="https://api.ngc.nvidia.com/v2/models/nvidia/waveglow_ckpt_fp32/versions/19.09.0/files/"
        "nvidia_waveglowpyt_fp32_20190427",
        filename="nvidia_waveglowpyt_fp32_20190427",  # the name torch.hub and NGC give it
        sha256=None,
        size=None,
        description="NVIDIA DeepLearningExamples' WaveGlow trained on LJSpeech, fp32, the file "
        "torch.hub.load('NVIDIA/DeepLearningExamples:torchhub', 'nvidia_waveglow') downloads "
        "(DeepLearningExamples layout; its stored config gives the size), Tacotron2 mels at 22.05 kHz",
        licence="see the NGC model page (terms not recorded here); DeepLearningExamples' code is BSD-3-Clause",
        source="NVIDIA/DeepLearningExamples PyTorch/SpeechSynthesis/Tacotron2/waveglow/entrypoints.py, "
        "nvidia_waveglow(), model_math='fp32'",
        page="https://ngc.nvidia.com/catalog/models/nvidia:waveglow_ckpt_fp32",
        verification=_UNPUBLISHED_DIGEST,
    ),
    DownloadableModel(
        name="nvidia-waveglow-dle-fp16",
        url="https://api.ngc.nvidia.com/v2/models/nvidia/waveglow_ckpt_amp/versions/19.09.0/files/"
        "nvidia_waveglowpyt_fp16_20190427",
        filename="nvidia_waveglowpyt_fp16_20190427",
        sha256=None,
        size=None,
        description="the same DeepLearningExamples model trained with mixed precision (torch.hub's "
        "model_math='fp16' file); converted to fp32 weights",
        licence="see the NGC model page (terms not recorded here); DeepLearningExamples' code is BSD-3-Clause",
        source="NVIDIA/DeepLearningExamples PyTorch/SpeechSynthesis/Tacotron2/waveglow/entrypoints.py, "
        "nvidia_waveglow(), model_math='fp16'",
        page="https://ngc.nvidia.com/catalog/models/nvidia:waveglow_ckpt_amp",
        verification=_UNPUBLISHED_DIGEST,
    ),
)
_MODELS = (
    PretrainedModel(
        name="compact-speech-v2",
        file="compact_speech_v2.pt",
        sha256="3f3f2a5c41adbcb7cf39fab05c88d2ee3b8f272532b005bbdb510e21d3cbc45a",
        description="compact flow with a pitch-synchronous source (5.8 M parameters, frame-rate "
        "conditioning, a sine at the predicted F0) trained on CPUs on ~29 minutes of multi-speaker, "
        "multi-lingual speech at 22.05 kHz, Tacotron2 mels",
        licence="CC-BY-SA-3.0 (derived from CC-BY-SA-3.0, CC-BY-3.0, BSD-like and CC0 recordings)",
        card="MODEL_CARD_compact-speech-v2.md",
    ),
)
# compact-speech-v1 (no pitch source; its recipe is configs/compact_mel.yaml) shipped until v2
# replaced it; its file and card are in the git history.
ALIASES = {DEFAULT: "compact-speech-v2"}
REGISTRY: dict[str, PretrainedModel] = {m.name: m for m in _MODELS}
DOWNLOADS: dict[str, DownloadableModel] = {m.name: m for m in _DOWNLOADS}

# A short public-domain recording to try the models on (LibriVox, "Sense and Sensibility", an
# English speaker none of the models was trained on; via CMU Sphinx's test data).
SAMPLE_CLIP = HERE / "sample_librivox.flac"


def names() -> list[str]:
    """Registered names: shipped models, their aliases, then the downloadable models."""
    return sorted(REGISTRY) + sorted(ALIASES) + sorted(DOWNLOADS)


def get(name: str) -> PretrainedModel | DownloadableModel:
    """The registered model called ``name`` (or an alias of one); ``ValueError`` naming the choices."""
    key = ALIASES.get(name, name)
    if key in REGISTRY:
        return REGISTRY[key]
    if key in DOWNLOADS:
        return DOWNLOADS[key]
    raise ValueError(f"no pretrained model called {name!r}; registered: {', '.join(names())}")


def is_registered(name: str) -> bool:
    return name in REGISTRY or name in ALIASES or name in DOWNLOADS


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(name: str, *, verify: bool = True, disable_progress: bool | None = None) -> Path:
    """The file of a registered model, checked against its recorded sha256.

    A downloadable model is fetched, checked and converted on first use (the converted waveflow
    checkpoint is returned; see :func:`waveflow.pretrained.download.fetch`, which raises
    :class:`~waveflow.pretrained.download.DownloadError` when it cannot be fetched).
    ``disable_progress`` is tqdm's ``disable`` for the download's progress bar (``None``: only on a
    terminal).
    """
    model = get(name)
    if isinstance(model, DownloadableModel):
        from waveflow.pretrained import download

        return download.fetch(model, verify=verify, disable_progress=disable_progress)
    path = model.path
    if not path.is_file():
        raise FileNotFoundError(f"pretrained model {model.name!r}: {path} is missing from this installation")
    if verify and model.sha256 and sha256_of(path) != model.sha256:
        raise ValueError(
            f"pretrained model {model.name!r}: {path} does not match its recorded sha256 (corrupt install?)"
        )
    return path
