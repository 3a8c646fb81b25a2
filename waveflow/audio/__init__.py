"""Audio front end (``features``: mel spectrogram; ``stft``: STFT helpers) and file I/O (``io``).

Only the bottom-layer modules are re-exported here; import :mod:`waveflow.audio.io` explicitly
(it pulls in soundfile and soxr).
"""

from waveflow.audio.features import MelSpectrogram, convert_log_base, mel_filterbank

__all__ = ["MelSpectrogram", "convert_log_base", "mel_filterbank"]
