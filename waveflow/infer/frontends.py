"""TTS front ends: the mel each toolkit's TTS models emit, and its conversion into a vocoder's.

:data:`FRONTENDS` is the one table of these conventions; ``Vocoder(..., mel_from=NAME, stats=...)``
and ``waveflow synthesize --mel-from NAME [--stats FILE]`` both read it. Each entry records what
the toolkit's LJSpeech recipe computes (``Frontend.mel``, a :class:`~waveflow.config.MelConfig`:
sample rate, STFT, band, filterbank, log base and floor) and how the values are scaled after the
log (none, decibels with Coqui's range normalisation, or global mean/variance normalisation):

============  ==========================  ======================  ===========  ==========================
name          values                      floor (magnitude)       band @ rate  normalisation / stats
============  ==========================  ======================  ===========  ==========================
nvidia        ``ln(max(x, 1e-5))``        1e-5                    0-8000 Hz    none
hifigan       ``ln(max(x, 1e-5))``        1e-5 (uncentred STFT)   0-8000 Hz    none
espnet        ``log10(max(x, 1e-10))``    1e-10                   80-7600 Hz   global MVN (``--stats``)
coqui         ``20 log10(max(x, 1e-8))``  1e-4 after clipping     0-11025 Hz   ref 20 dB, [-4, 4]
coqui-ln      ``ln(max(x, 1e-8))``        1e-8                    0-8000 Hz    none
speechbrain   ``ln(max(x, 1e-5))``        1e-5                    0-8000 Hz    none
torchaudio    ``ln(max(x, 1e-5))``        1e-5                    0-8000 Hz    none
============  ==========================  ======================  ===========  ==========================

``x`` is the magnitude (not power) mel of a Hann-windowed 1024-point STFT, hop 256, 80 Slaney-scale,
Slaney-normalised filters, at 22050 Hz. Sources: NVIDIA/tacotron2 ``layers.py`` ``TacotronSTFT``
and ``audio_processing.py`` (``dynamic_range_compression``, C=1, clip 1e-5); jik876/hifi-gan
``meldataset.py`` (``center=False`` after ``(n_fft - hop) / 2`` reflect padding, ``sqrt(re^2 + im^2 +
1e-9)``); ESPnet2 ``espnet2/tts/feats_extract/log_mel_fbank.py`` (``fmin=80, fmax=7600,
log_base=10``, magnitude ``sqrt(max(power, 1e-10))``) and ``layers/log_mel.py`` (clamp 1e-10), its TTS
models emit ``feat_gen`` (normalised with ``feats_stats.npz``) and ``feat_gen_denorm``; Coqui TTS
``TTS/config/shared_configs.py`` ``BaseAudioConfig`` defaults (``spec_gain=20``, ``np.log10``,
``ref_level_db=20``, ``signal_norm``, ``symmetric_norm``, ``max_norm=4``, ``min_level_db=-100``,
``clip_norm``, ``mel_fmax=None``) with ``utils/audio/numpy_transforms.py`` ``amp_to_db`` (floor 1e-8)
and ``processor.py`` ``normalize``; Coqui's LJSpeech TTS recipes (``recipes/ljspeech/tacotron2-DDC``:
``signal_norm=False, spec_gain=1, log_func=np.log, mel_fmax=8000``); SpeechBrain
``recipes/LJSpeech/TTS/vocoder/hifigan/hparams/train.yaml`` (``power: 1``, Slaney norm and scale,
``dynamic_range_compression``) over torchaudio's centred ``MelSpectrogram``; torchaudio
``examples/pipeline_tacotron2/datasets.py`` (``SpectralNormalization``: ``log(clamp(x, 1e-5))``), whose
``TACOTRON2_*`` bundles' vocoders take ``exp`` of the Tacotron2 output.

The conversion is exact where a mapping exists: de-normalisation with the statistics, Coqui's range
normalisation inside its clipping range, decibels to a log, the log base, and re-clamping at the
vocoder's floor when the front end's floor is lower. What no conversion repairs is reported instead:
a different sample rate or hop (wrong speed and pitch), band, STFT size, filterbank or power as a
:class:`FrontendMismatchWarning`, and a floor above the vocoder's, or a different STFT centring, as
caveats (:meth:`Frontend.caveats`). A front end configured differently from its recipe is declared
with :meth:`Frontend.replace` (``FRONTENDS["espnet"].replace(sample_rate=16000, f_max=8000.0)``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from waveflow.audio.features import convert_log_base
from waveflow.config import MelConfig
from waveflow.infer import mel_guard

Compression = Literal["log", "db"]
StatsUse = Literal["unused", "optional"]
StatsLike = str | os.PathLike[str] | tuple[Any, Any] | Sequence[Any]


class FrontendMismatchWarning(mel_guard.MelConventionWarning):
    """A TTS front end's analysis (sample rate, hop, band, STFT, filterbank) differs from the vocoder's."""


def _log(x: float, base: str) -> float:
    return math.log(x) if base == "ln" else math.log10(x)


@dataclass(frozen=True)
class Frontend:
    """One TTS toolkit's mel convention: its analysis in ``mel`` and the scaling after the log.

    ``mel.log`` / ``mel.log_floor`` are the log and floor of the values the toolkit emits (for
    ``compression="db"``: ``spec_gain * log10(max(x, log_floor))``, then Coqui's scaling).
    ``stats``: ``"optional"`` when the toolkit's mels may be mean/variance normalised with dataset
    statistics (then give them; ESPnet's ``feat_gen``), ``"unused"`` when they never are.
    """

    name: str
    title: str
    mel: MelConfig
    compression: Compression = "log"
    stats: StatsUse = "unused"
    outputs: str = ""  # what the toolkit calls the mel it hands to a vocoder
    # Coqui's scaling of decibels (compression="db"): dB = spec_gain * log10(x) - ref_level_db, then
    # (signal_norm) mapped from [min_level_db, 0] to [-max_norm, max_norm] (or [0, max_norm]), clipped.
    spec_gain: float = 20.0
    ref_level_db: float = 0.0
    signal_norm: bool = False
    min_level_db: float = -100.0
    max_norm: float = 4.0
    symmetric: bool = True
    clip_norm: bool = True

    def replace(self, **changes: Any) -> Frontend:
        """A copy with ``changes``; :class:`~waveflow.config.MelConfig` fields go to :attr:`mel`.

        Declares a front end configured differently from its toolkit's recipe, e.g.
        ``FRONTENDS["espnet"].replace(sample_rate=16000, hop_length=200, f_max=8000.0)``.
        """
        mel_fields = {f.name for f in dataclasses.fields(MelConfig)}
        own_fields = {f.name for f in dataclasses.fields(self)} - {"mel"}
        unknown = sorted(set(changes) - mel_fields - own_fields)
        if unknown:
            raise ValueError(f"unknown front-end setting(s) {unknown}")
        mel = self.mel.replace(**{k: v for k, v in changes.items() if k in mel_fields})
        return dataclasses.replace(self, mel=mel, **{k: v for k, v in changes.items() if k in own_fields})

    # -- description --------------------------------------------------------------------------------
    @property
    def floor(self) -> float:
        """The magnitude below which the emitted values say nothing (Coqui's clipping raises it)."""
        floor = self.mel.log_floor
        if self.compression == "db" and self.signal_norm and self.clip_norm:
            floor = max(floor, 10.0 ** ((self.min_level_db + self.ref_level_db) / self.spec_gain))
        return floor

    @property
    def normalized_range(self) -> tuple[float, float] | None:
        """Coqui's clipping range of normalised values, or ``None``."""
        if self.compression != "db" or not self.signal_norm:
            return None
        return (-self.max_norm if self.symmetric else 0.0, self.max_norm)

    def describe(self) -> str:
        """The values this front end emits, in one line."""
        mel = self.mel
        if self.compression == "db":
            values = f"{self.spec_gain:g}*log10(max(x, {mel.log_floor:g}))"
            if self.ref_level_db:
                values += f" - {self.ref_level_db:g}"
            if self.signal_norm:
                low, high = self.normalized_range or (0.0, 0.0)
                values += f" dB, range-normalised from {self.min_level_db:g} dB to [{low:g}, {high:g}]"
                if self.clip_norm:
                    values += " and clipped"
        else:
            values = f"{mel.log}(max(x, {mel.log_floor:g}))"
        text = (
            f"{self.title}: {values} of the {'magnitude' if mel.power == 1.0 else 'power'} mel, "
            f"{mel_guard.describe_band(mel)} at {mel.sample_rate} Hz, hop {mel.hop_length}"
        )
        if self.stats == "optional":
            text += "; mean/variance normalised when statistics are given"
        return text

    def mismatches(self, target: MelConfig) -> list[str]:
        """What differs between this front end's analysis and ``target``'s and no conversion repairs."""
        src, name = self.mel, self.name
        found = []
        if src.sample_rate != target.sample_rate or src.hop_length != target.hop_length:
            found.append(
                f"{name} mels are {src.sample_rate} Hz with hop {src.hop_length} "
                f"({src.sample_rate / src.hop_length:.2f} frames/s) but this vocoder's are {target.sample_rate} Hz "
                f"with hop {target.hop_length} ({target.sample_rate / target.hop_length:.2f} frames/s): "
                f"the audio would come out at the wrong speed and pitch"
            )
        if mel_guard.describe_band(src) != mel_guard.describe_band(target):
            found.append(
                f"{name} mels cover {mel_guard.describe_band(src)} but this vocoder's cover "
                f"{mel_guard.describe_band(target)}: a band cannot be converted, the bins would be read as "
                f"other frequencies"
            )
        if (src.n_fft, src.win_length) != (target.n_fft, target.win_length):
            found.append(
                f"{name} mels use n_fft={src.n_fft}, win_length={src.win_length}, this vocoder's "
                f"n_fft={target.n_fft}, win_length={target.win_length}"
            )
        if (src.mel_scale, src.norm) != (target.mel_scale, target.norm):
            found.append(
                f"{name} mels use the {src.mel_scale} scale with norm={src.norm}, this vocoder's the "
                f"{target.mel_scale} scale with norm={target.norm}"
            )
        if src.power != target.power:
            found.append(
                f"{name} mels filter the STFT {'magnitude' if src.power == 1.0 else 'power'}, this vocoder's "
                f"the {'magnitude' if target.power == 1.0 else 'power'}"
            )
        if found:
            found[-1] += (
                f" (these are {self.title}'s recipe settings; declare yours with "
                f"FRONTENDS[{name!r}].replace(...) if they match the vocoder)"
            )
        return found

    def caveats(self, target: MelConfig) -> list[str]:
        """Known, bounded losses of the conversion into ``target`` (not warned about)."""
        found = []
        if self.floor > target.log_floor * (1 + 1e-9):
            found.append(
                f"{self.name} mels stop at {self.floor:g} ({_log(self.floor, target.log):.2f} after conversion), "
                f"above this vocoder's floor {target.log_floor:g} ({_log(target.log_floor, target.log):.2f}): "
                f"the quietest parts come back at the higher level"
            )
        if self.mel.center != target.center:
            found.append(
                f"{self.name} frames are {'centred' if self.mel.center else 'uncentred'}, this vocoder's "
                f"{'centred' if target.center else 'uncentred'}: the mel is offset by half a hop "
                f"({target.hop_length // 2} samples)"
            )
        return found

    # -- conversion ---------------------------------------------------------------------------------
    def convert(
        self,
        mel: Tensor,
        target: MelConfig,
        stats: tuple[Tensor | np.ndarray, Tensor | np.ndarray] | None = None,
    ) -> Tensor:
        """This front end's ``mel`` ``(..., n_mels, frames)`` -> ``target``'s log and floor (same shape).

        ``stats`` ``(mean, scale)`` per bin undo a mean/variance normalisation first. Computed in
        float32 (float64 stays float64); returns the input's dtype.
        """
        if stats is not None and self.stats == "unused":
            raise ValueError(f"{self.name} mels are not mean/variance normalised: no statistics apply")
        dtype = mel.dtype
        x = mel if dtype == torch.float64 else mel.float()
        if stats is not None:
            x = mel_guard.denormalize(x, *stats)
        if self.compression == "db":
            if self.signal_norm:
                low, high = self.normalized_range or (0.0, 0.0)
                if self.clip_norm:
                    x = x.clamp(low, high)  # as Coqui's denormalize
                x = mel_guard.coqui_denormalize(
                    x, max_norm=self.max_norm, min_level_db=self.min_level_db, symmetric=self.symmetric
                )
            log10 = (x + self.ref_level_db) / self.spec_gain
            out = convert_log_base(log10, "log10", target.log)
        else:
            out = convert_log_base(x, self.mel.log, target.log)
        # Exact when this floor is the lower one: max(max(x, a), b) = max(x, b) for a <= b.
        return out.clamp(min=_log(target.log_floor, target.log)).to(dtype)

    def check_input(self, mel: Tensor | np.ndarray, *, with_stats: bool) -> list[str]:
        """Warnings when the values of ``mel`` (as given, before conversion) are not this front end's.

        Heuristic, and only on clear evidence: values outside Coqui's clipping range, a log base
        or scaling recognised as another one (:func:`~waveflow.infer.mel_guard.guess_mel_convention`),
        or normalised values given without statistics.
        """
        diagnosis = mel_guard.guess_mel_convention(mel)
        s = diagnosis.stats
        said = f"mel_from={self.name!r} ({self.describe()})"
        if self.normalized_range is not None and self.clip_norm and not with_stats:
            low, high = self.normalized_range
            slack = 0.125 * (high - low)  # a TTS model's predictions overshoot the range a little
            if s.minimum < low - slack or s.maximum > high + slack:
                return [
                    f"the mel's values run from {s.minimum:.2f} to {s.maximum:.2f}, outside [{low:g}, {high:g}], "
                    f"so it is not {said}; it looks like {diagnosis.description}"
                ]
            return []
        if with_stats:
            if diagnosis.kind in ("db", "linear", "unit_range") or diagnosis.floor is not None:
                return [
                    f"statistics were given, but the mel looks like {diagnosis.description}, not mean/variance "
                    f"normalised: it may be de-normalised already (ESPnet's feat_gen_denorm); drop the statistics"
                ]
            return []
        # Normalised values centre on 0 within a few units; a log-mel's silence floor can hide the
        # spread guess_mel_convention looks for, so the range decides here too.
        centred = abs(s.mean) < 0.5 and s.minimum > -6.0 and s.maximum < 6.0
        if (diagnosis.kind == "mvn" or centred) and self.stats == "optional":
            return [
                f"the mel looks like {diagnosis.description}: give the statistics it was normalised with "
                f"(stats=..., --stats feats_stats.npz) or pass the de-normalised mel"
            ]
        if diagnosis.kind in ("mvn", "coqui_range", "db", "unit_range", "linear"):
            return [f"the mel looks like {diagnosis.description}, not {said}"]
        if self.compression == "log" and diagnosis.log is not None and diagnosis.log != self.mel.log:
            return [f"the mel looks like {diagnosis.description}, not {said}"]
        return []


def _recipe(**changes: Any) -> MelConfig:
    """The LJSpeech analysis most toolkits share (NVIDIA's: 22050 Hz, 1024/256/1024, 80 Slaney mels)."""
    return MelConfig().replace(**changes)


FRONTENDS: dict[str, Frontend] = {
    f.name: f
    for f in (
        Frontend(
            "nvidia",
            "NVIDIA Tacotron2 (TacotronSTFT)",
            _recipe(),
            outputs="mel_outputs_postnet",
        ),
        Frontend(
            "hifigan",
            "HiFi-GAN (jik876 meldataset.mel_spectrogram)",
            _recipe(center=False, magnitude_eps=1e-9),
            outputs="mel_spectrogram(...)",
        ),
        Frontend(
            "espnet",
            "ESPnet2 TTS (LogMelFbank)",
            _recipe(f_min=80.0, f_max=7600.0, log="log10", log_floor=1e-10),
            stats="optional",
            outputs="feat_gen (normalised) or feat_gen_denorm",
        ),
        Frontend(
            "coqui",
            "Coqui TTS (BaseAudioConfig defaults)",
            _recipe(f_max=None, log="log10", log_floor=1e-8),
            compression="db",
            outputs="model_outputs",
            spec_gain=20.0,
            ref_level_db=20.0,
            signal_norm=True,
            min_level_db=-100.0,
            max_norm=4.0,
            symmetric=True,
            clip_norm=True,
        ),
        Frontend(
            "coqui-ln",
            "Coqui TTS LJSpeech recipes (signal_norm=False, np.log)",
            _recipe(log_floor=1e-8),
            outputs="model_outputs",
        ),
        Frontend(
            "speechbrain",
            "SpeechBrain Tacotron2/HiFi-GAN LJSpeech (mel_spectogram)",
            _recipe(),
            outputs="encode_text(...)[0]",
        ),
        Frontend(
            "torchaudio",
            "torchaudio TACOTRON2_* bundles",
            _recipe(),
            outputs="tacotron2.infer(...)[0]",
        ),
    )
}
FRONTEND_NAMES = tuple(FRONTENDS)


def get_frontend(frontend: str | Frontend) -> Frontend:
    """A :class:`Frontend` by name (see :data:`FRONTENDS`), or ``frontend`` itself."""
    if isinstance(frontend, Frontend):
        return frontend
    if not isinstance(frontend, str) or frontend not in FRONTENDS:
        raise ValueError(f"unknown TTS front end {frontend!r}; known: {', '.join(FRONTEND_NAMES)}")
    return FRONTENDS[frontend]


def _load_stats(stats: StatsLike, n_mels: int) -> tuple[Tensor, Tensor]:
    """A statistics file (:func:`~waveflow.infer.mel_guard.load_mvn_stats`) or ``(mean, scale)`` ->
    float64 tensors ``(n_mels,)``, checked against ``n_mels``."""
    if isinstance(stats, (str, os.PathLike)):
        mean, scale = mel_guard.load_mvn_stats(stats)
        where = f"statistics file {os.fspath(stats)}"
    else:
        if len(stats) != 2:
            raise ValueError("stats must be a file or a (mean, scale) pair")
        mean, scale = stats
        where = "stats"
    out = []
    for name, value in (("mean", mean), ("scale", scale)):
        t = torch.as_tensor(np.asarray(value.cpu() if isinstance(value, Tensor) else value, dtype=np.float64))
        t = t.reshape(-1)
        if t.numel() != n_mels:
            raise ValueError(f"{where}: {name} has {t.numel()} values but the vocoder has n_mels={n_mels}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{where}: {name} contains NaN or Inf")
        out.append(t)
    if not bool((out[1] > 0).all()):
        raise ValueError(f"{where}: scale must be positive in every bin")
    return out[0], out[1]


class MelAdapter:
    """A front end bound to a vocoder's mel convention (and statistics): ``adapter(mel)`` converts.

    ``mismatches`` and ``caveats`` are the front end's against the vocoder's ``mel_config`` (see
    :class:`Frontend`); the vocoder warns about the first once, when the adapter is set.
    """

    def __init__(self, frontend: str | Frontend, mel_config: MelConfig, stats: StatsLike | None = None):
        self.frontend = get_frontend(frontend)
        self.mel_config = mel_config
        if stats is not None and self.frontend.stats == "unused":
            raise ValueError(
                f"{self.frontend.name} mels are not mean/variance normalised, so no statistics apply "
                f"(they are for front ends that normalise: "
                f"{', '.join(n for n, f in FRONTENDS.items() if f.stats != 'unused')})"
            )
        self.stats = None if stats is None else _load_stats(stats, mel_config.n_mels)
        self.mismatches = self.frontend.mismatches(mel_config)
        self.caveats = self.frontend.caveats(mel_config)

    def __call__(self, mel: Tensor) -> Tensor:
        """``(..., n_mels, frames)`` in the front end's convention -> the vocoder's."""
        return self.frontend.convert(mel, self.mel_config, self.stats)

    def check(self, mel: Tensor) -> list[str]:
        """Warnings for ``mel`` (as given): the front end's input check, else the vocoder's own
        :func:`~waveflow.infer.mel_guard.check_mel_statistics` of the converted mel."""
        messages = self.frontend.check_input(mel, with_stats=self.stats is not None)
        if messages:
            return messages
        # A front end that clips higher (Coqui) raises the converted floor: a caveat, not a mistake.
        expected = self.mel_config.replace(log_floor=max(self.mel_config.log_floor, self.frontend.floor))
        return mel_guard.check_mel_statistics(self(torch.as_tensor(mel)), expected)

    def describe(self) -> str:
        """What the conversion does, in one line."""
        target = self.mel_config
        steps = []
        if self.stats is not None:
            steps.append("de-normalised with the statistics")
        steps.append(
            f"{self.frontend.describe()} -> {target.log}(max(x, {target.log_floor:g})) "
            f"({mel_guard.describe_band(target)} at {target.sample_rate} Hz, hop {target.hop_length})"
        )
        return "; ".join(steps)


def adapter_for(
    mel_from: str | Frontend | None,
    mel_config: MelConfig,
    stats: StatsLike | None = None,
    *,
    stacklevel: int = 2,
) -> MelAdapter | None:
    """The :class:`MelAdapter` a vocoder applies for ``mel_from`` (``None``: no conversion).

    One :class:`FrontendMismatchWarning` says what no conversion repairs (``stacklevel`` points it
    at the user's call); ``stats`` without a front end are refused.
    """
    if mel_from is None:
        if stats is not None:
            raise ValueError("stats are for a normalising TTS front end: give mel_from too")
        return None
    adapter = MelAdapter(mel_from, mel_config, stats)
    if adapter.mismatches:
        warnings.warn("; ".join(adapter.mismatches), FrontendMismatchWarning, stacklevel=stacklevel + 1)
    return adapter
