"""torch.hub entry points for waveflow.

::

    import torch

    vocoder = torch.hub.load("/path/to/waveflow", "default", source="local")  # shipped, no network
    vocoder = torch.hub.load("/path/to/waveflow", "waveglow", source="local")  # NVIDIA's, fetched once
    audio, _ = vocoder(mel)  # (80, frames) or (B, 80, frames) Tacotron2 mels -> (B, frames * 256)

The same works with a GitHub ``owner/repo`` in place of the path (``source="github"``). Every entry
point returns a :class:`waveflow.Vocoder` (``model_only=True``: the bare ``WaveGlow`` network).
Downloaded models go to waveflow's own cache folder (``$WAVEFLOW_CACHE``, else
``$XDG_CACHE_HOME/waveflow``, else ``~/.cache/waveflow``), not torch.hub's, and are read through
waveflow's safe reader: no pickled code from the checkpoint runs.
"""

from __future__ import annotations

# Checked by torch.hub before an entry point runs (import names; "yaml" is PyYAML).
dependencies = ["torch", "numpy", "librosa", "soundfile", "soxr", "tqdm", "yaml"]

NVIDIA_DEFAULT = "nvidia-waveglow-universal-v5"


def _load(name: str, device: str, precision: str, engine: str, model_only: bool):
    from waveflow import Vocoder, pretrained

    if model_only:
        from waveflow.checkpoint import load_model

        model, _ = load_model(pretrained.resolve(name), map_location=device)
        return model
    return Vocoder.from_pretrained(name, device=device, precision=precision, engine=engine)


def default(device: str = "cpu", precision: str = "fp32", engine: str = "auto", model_only: bool = False):
    """The model that ships inside waveflow (``compact-speech-v2``): nothing is downloaded."""
    return _load("default", device, precision, engine, model_only)


def waveglow(
    pretrained: bool = True,
    name: str = NVIDIA_DEFAULT,
    device: str = "cpu",
    precision: str = "fp32",
    engine: str = "auto",
    model_only: bool = False,
):
    """A WaveGlow vocoder by registered name; by default NVIDIA's published universal model.

    Args:
        pretrained: ``False`` returns an untrained ``WaveGlow`` network of NVIDIA's released size
            (``waveflow.presets.waveglow_ljspeech()``), for training.
        name: any registered name (``waveflow pretrained`` and ``waveflow download`` list them):
            ``"nvidia-waveglow-universal-v5"`` (NVIDIA/waveglow), ``"nvidia-waveglow-dle-fp32"``
            (the file DeepLearningExamples' ``nvidia_waveglow`` hub entry loads), ``"default"``...
        device, precision, engine: as for :meth:`waveflow.Vocoder.from_pretrained`.
        model_only: return the bare ``WaveGlow`` network (eval mode, weight norm kept) instead of
            a :class:`~waveflow.Vocoder`.
    """
    if not pretrained:
        from waveflow import presets
        from waveflow.model import WaveGlow

        return WaveGlow(presets.waveglow_ljspeech()).to(device)
    return _load(name, device, precision, engine, model_only)
