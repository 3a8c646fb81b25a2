"""Typed configuration.

Every config is a frozen dataclass. ``from_dict`` rejects unknown keys (naming their dotted path and
the valid keys there), ``to_dict`` gives plain Python types for YAML/JSON and checkpoints, and
``validate`` checks cross-field rules and raises ``ValueError`` with the offending numbers.

Only composition roots (``WaveGlow.from_config``, the training loop, the CLI) read these objects;
leaf modules take plain keyword arguments.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound="ConfigBase")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a plain value (from YAML/JSON) to the annotated field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        # Try each alternative; the first that converts wins.
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(f"{where}: cannot interpret {value!r} as {tp}: {'; '.join(errors)}")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return tp.from_dict(value, _where=where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ValueError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


@dataclass(frozen=True)
class ConfigBase:
    """Shared behaviour: strict ``from_dict``, ``to_dict``, ``replace`` and ``validate``."""

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, _where: str | None = None) -> T:
        where = _where or cls.__name__  # the root class, then the dotted path: "ExperimentConfig.model"
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            root, _, section = where.partition(".")
            paths = ", ".join(repr(f"{section}.{k}" if section else k) for k in unknown)
            level = f"in '{section}'" if section else f"at the top level of {root}"
            what = f"key{'s' if len(unknown) > 1 else ''} {paths}"
            raise ValueError(f"unknown config {what}; valid keys {level}: {', '.join(sorted(names))}")
        kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, ConfigBase):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def replace(self: T, **changes: Any) -> T:
        obj = dataclasses.replace(self, **changes)
        obj.validate()
        return obj

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, ConfigBase):
                v.validate()


def flatten_settings(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested settings dict as ``{"model.wavenet.n_layers": 8, ...}`` (to compare two configs key by key)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class MelConfig(ConfigBase):
    """How audio becomes the mel spectrogram the model is conditioned on.

    The defaults are NVIDIA's Tacotron2/WaveGlow convention (``TacotronSTFT``): 22050 Hz,
    1024/256/1024, 80 Slaney mels from 0 to 8000 Hz, STFT magnitude, centred reflect padding,
    natural log with a floor of 1e-5.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    window: typing.Literal["hann"] = "hann"
    # centred STFT (pad n_fft // 2 each side, frames = T // hop + 1) or HiFi-GAN's
    # uncentred one (pad (n_fft - hop) / 2 each side, frames = T // hop).
    center: bool = True
    pad_mode: typing.Literal["reflect", "constant"] = "reflect"
    power: float = 1.0  # 1: magnitude, 2: power
    magnitude_eps: float = 0.0  # added under the square root (HiFi-GAN uses 1e-9)
    mel_scale: typing.Literal["slaney", "htk"] = "slaney"
    norm: typing.Literal["slaney", "none"] = "slaney"
    log: typing.Literal["ln", "log10"] = "ln"
    log_floor: float = 1e-5

    def validate(self) -> None:
        _require(self.sample_rate > 0, f"mel.sample_rate must be positive, got {self.sample_rate}")
        _require(self.n_fft > 0 and self.hop_length > 0, "mel.n_fft and mel.hop_length must be positive")
        _require(
            0 < self.win_length <= self.n_fft,
            f"mel.win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}",
        )
        _require(self.n_mels > 0, f"mel.n_mels must be positive, got {self.n_mels}")
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        _require(
            0 <= self.f_min < f_max <= nyquist,
            f"mel band must satisfy 0 <= f_min < f_max <= sample_rate/2 = {nyquist}, "
            f"got f_min={self.f_min}, f_max={self.f_max}",
        )
        _require(self.power in (1.0, 2.0), f"mel.power must be 1.0 or 2.0, got {self.power}")
        _require(self.log_floor > 0, f"mel.log_floor must be positive, got {self.log_floor}")
        if not self.center:
            _require(
                (self.n_fft - self.hop_length) % 2 == 0,
                f"uncentred STFT needs n_fft - hop_length even, got {self.n_fft} - {self.hop_length}",
            )


@dataclass(frozen=True)
class WaveNetConfig(ConfigBase):
    """The coupling network (NVIDIA's ``WN``): ``n_layers`` dilated gated convolutions."""

    n_layers: int = 8
    n_channels: int = 256
    kernel_size: int = 3
    # Depthwise-separable dilated convolutions (SqueezeWave): a per-channel dilated convolution
    # followed by a pointwise one, ~kernel_size times fewer multiply-adds than a dense one.
    separable: bool = False
    # Dilations 1, 2, ..., 2 ** (cycle - 1), then again from 1 (None: 2 ** i for every layer, NVIDIA).
    dilation_cycle: int | None = None

    def validate(self) -> None:
        _require(self.n_layers >= 1, f"wavenet.n_layers must be >= 1, got {self.n_layers}")
        _require(self.n_channels >= 1, f"wavenet.n_channels must be >= 1, got {self.n_channels}")
        _require(
            self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"wavenet.kernel_size must be odd (the convolution is non-causal and centred), got {self.kernel_size}",
        )
        _require(
            self.dilation_cycle is None or self.dilation_cycle >= 1,
            f"wavenet.dilation_cycle must be >= 1, got {self.dilation_cycle}",
        )
        _require(
            self.dilation_cycle is None or self.separable,
            "wavenet.dilation_cycle is only implemented for separable WaveNets (wavenet.separable: true)",
        )


@dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """The flow: squeeze, steps of (mixing, coupling), early outputs, mel upsampler.

    ``coupling``: ``affine`` (WaveGlow/RealNVP/Glow) or ``additive`` (NICE).
    ``mixing``: what precedes each coupling: ``conv1x1`` (dense invertible 1x1 convolution,
    WaveGlow), ``conv1x1_lu`` (LU-parameterised, Glow), ``reverse`` (channel reversal, RealNVP/NICE)
    or ``none``.
    ``alternate_halves``: odd steps transform the first half instead of the second (RealNVP's
    alternating masks).
    ``conditioning``: how the mel reaches the couplings. ``upsample`` (WaveGlow): a transposed
    convolution to audio rate, grouped like the audio (``n_mels * n_group`` channels).
    ``frame``: the compact family (SqueezeWave-style): a small convolutional encoder at frame rate
    (``cond_channels`` channels, ``cond_kernel_size`` frames around each hop) whose output is
    repeated for the ``hop_length / n_group`` positions of each frame; no audio-rate upsampler.
    ``share_wavenet``: steps that see the same number of channels share one coupling network
    (WG-WaveNet); each step keeps its own 1x1 mixing.
    ``source``: ``sine`` gives a ``frame``-conditioned model a pitch-synchronous excitation
    (:mod:`waveflow.nn.source`): a sine at the speaker's F0, grouped like the audio, joins the
    conditioning; the F0 comes from a small predictor on the mel (trained beside the flow on YIN
    targets; the reference's own F0 drives the excitation during training). ``none``: no source.
    ``source_direct``: the excitation's samples also reach every coupling directly: they are
    appended to the conditioning (``n_group`` more channels, which the coupling networks' layers do
    not read) and a zero-initialised linear map adds them to each coupling's shift, so a network can
    copy pitch pulses into the audio instead of decoding them from the mixed encoding.

    ``n_mels`` and ``hop_length`` are the mel's: ``VocoderConfig.from_dict`` and ``ExperimentConfig.from_dict``
    take them from the ``mel`` section unless the ``model`` section repeats them (older checkpoints
    and YAML files do; they must then be equal). On its own a ``ModelConfig`` has the defaults below.
    """

    n_mels: int = 80
    hop_length: int = 256
    upsample_kernel_size: int = 1024
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    wavenet: WaveNetConfig = field(default_factory=WaveNetConfig)
    coupling: typing.Literal["affine", "additive"] = "affine"
    mixing: typing.Literal["conv1x1", "conv1x1_lu", "reverse", "none"] = "conv1x1"
    alternate_halves: bool = False
    actnorm: bool = False
    log_scale_clamp: float | None = None
    weight_norm: bool = True
    conditioning: typing.Literal["upsample", "frame"] = "upsample"
    cond_channels: int = 128
    cond_kernel_size: int = 4
    share_wavenet: bool = False
    source: typing.Literal["none", "sine"] = "none"
    source_direct: bool = False

    @property
    def cond_size(self) -> int:
        """Channels of the conditioning tensor every coupling network receives."""
        if self.conditioning == "upsample":
            return self.n_mels * self.n_group
        return self.cond_channels + (self.n_group if self.source_direct else 0)

    def validate(self) -> None:
        super().validate()
        _require(self.n_mels >= 1, f"model.n_mels must be >= 1, got {self.n_mels}")
        _require(
            self.source == "none" or self.conditioning == "frame",
            f"model.source={self.source!r} needs model.conditioning='frame' (got {self.conditioning!r})",
        )
        _require(
            not self.source_direct or (self.source != "none" and self.wavenet.separable),
            "model.source_direct needs a source (model.source) and separable coupling networks",
        )
        _require(self.cond_channels >= 1, f"model.cond_channels must be >= 1, got {self.cond_channels}")
        _require(
            self.cond_kernel_size >= 2 and self.cond_kernel_size % 2 == 0,
            f"model.cond_kernel_size must be even and >= 2 (frames around each hop), got {self.cond_kernel_size}",
        )
        _require(self.hop_length >= 1, f"model.hop_length must be >= 1, got {self.hop_length}")
        _require(
            self.upsample_kernel_size >= self.hop_length,
            f"model.upsample_kernel_size ({self.upsample_kernel_size}) must be >= hop_length "
            f"({self.hop_length}) so every output sample is covered",
        )
        _require(self.n_flows >= 1, f"model.n_flows must be >= 1, got {self.n_flows}")
        _require(
            self.n_group >= 2 and self.n_group % 2 == 0,
            f"model.n_group must be even and >= 2, got {self.n_group}",
        )
        _require(
            self.hop_length % self.n_group == 0,
            f"model.hop_length ({self.hop_length}) must be divisible by n_group ({self.n_group}) so that "
            f"every mel frame maps to whole groups",
        )
        _require(self.n_early_every >= 1, f"model.n_early_every must be >= 1, got {self.n_early_every}")
        _require(
            self.n_early_size >= 0 and self.n_early_size % 2 == 0,
            f"model.n_early_size must be even and >= 0, got {self.n_early_size}",
        )
        n_early_points = (self.n_flows - 1) // self.n_early_every
        remaining = self.n_group - n_early_points * self.n_early_size
        _require(
            remaining >= 2,
            f"early outputs leave {remaining} channel(s) for the last flows "
            f"(n_group={self.n_group}, n_flows={self.n_flows}, n_early_every={self.n_early_every}, "
            f"n_early_size={self.n_early_size}); at least 2 are needed",
        )
        if self.log_scale_clamp is not None:
            _require(
                self.log_scale_clamp > 0, f"model.log_scale_clamp must be > 0, got {self.log_scale_clamp}"
            )


class _ModelOnMels(ConfigBase):
    """A ``model`` and the ``mel`` it is conditioned on, which gives it ``n_mels`` and ``hop_length``."""

    model: ModelConfig
    mel: MelConfig

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, _where: str | None = None) -> T:
        data = dict(data or {})
        model = data.get("model", {})
        if isinstance(model, Mapping):  # a ModelConfig object is taken as it is
            mel = data["mel"] = _coerce(data.get("mel", {}), MelConfig, f"{_where or cls.__name__}.mel")
            data["model"] = {"n_mels": mel.n_mels, "hop_length": mel.hop_length, **model}
        return super().from_dict(data, _where)

    def validate(self) -> None:
        super().validate()
        _require(
            self.model.n_mels == self.mel.n_mels,
            f"model.n_mels ({self.model.n_mels}) differs from mel.n_mels ({self.mel.n_mels})",
        )
        _require(
            self.model.hop_length == self.mel.hop_length,
            f"model.hop_length ({self.model.hop_length}) differs from mel.hop_length ({self.mel.hop_length})",
        )


@dataclass(frozen=True)
class VocoderConfig(_ModelOnMels):
    """A model together with the mel convention it was trained on."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mel: MelConfig = field(default_factory=MelConfig)


@dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Where training audio comes from and how it is cut.

    ``training_files`` / ``validation_files``: file lists (one wav path per line, or NVIDIA's
    ``path|text``; relative paths are resolved against the list's folder).
    ``short_clips``: what to do with clips shorter than ``segment_length``. Zero-padding them, as
    NVIDIA/waveglow did, lets the flow drive log-scales towards -inf on exact digital silence and
    produces NaNs (NVIDIA/waveglow#95). ``skip`` drops them when the dataset is built (reported);
    ``pad_noise`` pads with noise at the 16-bit quantisation level instead of zeros.
    ``dequantize``: add uniform noise of one 16-bit step, so the model fits a continuous density
    of the quantised audio (the NLL is then a proper bound).
    ``resample``: resample files at another rate (with a warning) instead of refusing them.
    ``mel_dir``: condition on given mels instead of computing them from the audio (fine-tuning on a
    TTS model's teacher-forced, ground-truth-aligned outputs, as HiFi-GAN does): for every training
    and validation file ``X.wav`` the folder must hold ``X.npy``, ``X.pt`` or ``X.npz`` of shape
    ``(n_mels, frames)``. Frame ``i`` belongs to the audio from sample ``i * hop_length`` on; a mel
    whose length differs from the audio's frame count by at most ``mel_frame_tolerance`` frames is
    cut, or extended by repeating its last frame, at the end (:mod:`waveflow.data.mel_dir`).
    """

    training_files: str = ""
    validation_files: str = ""
    mel_dir: str = ""
    mel_frame_tolerance: int = 4
    segment_length: int = 16000
    short_clips: typing.Literal["skip", "pad_noise"] = "skip"
    dequantize: bool = True
    resample: bool = False
    num_workers: int = 2
    validation_max_seconds: float = 10.0

    def validate(self) -> None:
        _require(self.segment_length > 0, f"data.segment_length must be positive, got {self.segment_length}")
        _require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        _require(self.validation_max_seconds > 0, "data.validation_max_seconds must be positive")
        _require(
            self.mel_frame_tolerance >= 0,
            f"data.mel_frame_tolerance must be >= 0, got {self.mel_frame_tolerance}",
        )
        _require(
            not (self.mel_dir and self.short_clips == "pad_noise"),
            "data.short_clips=pad_noise cannot be used with data.mel_dir (a given mel has no frames for "
            "the padding); use data.short_clips=skip",
        )


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Optimisation, precision, logging and checkpointing of one training run."""

    # Fine-tuning: start from the weights of a checkpoint (waveflow or NVIDIA WaveGlow) or of a
    # registered model (`waveflow pretrained`, e.g. default) instead of a random initialisation;
    # fresh optimizer, step 0. The model config must match the source's (waveflow.train.init_from).
    init_from: str = ""
    seed: int = 1234
    batch_size: int = 12  # global batch; split over DDP ranks
    max_steps: int = 580_000
    learning_rate: float = 1e-4
    lr_schedule: typing.Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_learning_rate: float = 0.0  # floor of the cosine schedule
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip_norm: float | None = 100.0
    sigma: float = 1.0  # std of the Gaussian prior on z during training
    precision: typing.Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    device: str = "auto"
    log_every: int = 50
    validate_every: int = 1000
    checkpoint_every: int = 2000
    keep_last: int = 3
    keep_best: bool = True
    max_nonfinite_steps: int = 20  # consecutive non-finite losses before the run stops
    num_audio_samples: int = 2  # validation utterances synthesized for TensorBoard
    # Exponential moving average of the weights: validation, TensorBoard samples and every saved
    # model use the average (the raw weights travel in the training state for --resume). None: off.
    ema_decay: float | None = None
    # Auxiliary multi-resolution STFT loss on audio synthesized by the inverse flow from
    # z ~ N(0, aux_sigma^2) (WG-WaveNet), added to the exact NLL with this weight every
    # aux_every steps. 0: pure likelihood training. The NLL is logged either way.
    aux_stft_weight: float = 0.0
    # The same, with the L1 distance of the (training front end's) log-mel spectrograms (HiFi-GAN's
    # reconstruction loss); both may be on, and the inverse pass is shared.
    aux_mel_weight: float = 0.0
    aux_sigma: float = 0.6
    aux_every: int = 1
    # Source models (model.source): weight of the pitch predictor's loss (voicing cross-entropy +
    # log-pitch L1), added to the NLL; the predictor drives the excitation at synthesis.
    f0_loss_weight: float = 1.0
    # Stop (as if interrupted, resumable) once the run has used this much CPU time, all sessions
    # together. None: no limit. Used to compare training recipes at an equal compute budget.
    max_cpu_minutes: float | None = None

    def validate(self) -> None:
        _require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _require(self.max_steps >= 1, f"train.max_steps must be >= 1, got {self.max_steps}")
        _require(self.learning_rate > 0, f"train.learning_rate must be positive, got {self.learning_rate}")
        _require(self.warmup_steps >= 0, "train.warmup_steps must be >= 0")
        _require(self.sigma > 0, f"train.sigma must be positive, got {self.sigma}")
        if self.grad_clip_norm is not None:
            _require(
                self.grad_clip_norm > 0, f"train.grad_clip_norm must be positive, got {self.grad_clip_norm}"
            )
        if self.ema_decay is not None:
            _require(0 < self.ema_decay < 1, f"train.ema_decay must be in (0, 1), got {self.ema_decay}")
        _require(self.aux_stft_weight >= 0, f"train.aux_stft_weight must be >= 0, got {self.aux_stft_weight}")
        _require(self.aux_mel_weight >= 0, f"train.aux_mel_weight must be >= 0, got {self.aux_mel_weight}")
        _require(self.aux_sigma >= 0, f"train.aux_sigma must be >= 0, got {self.aux_sigma}")
        _require(self.f0_loss_weight >= 0, f"train.f0_loss_weight must be >= 0, got {self.f0_loss_weight}")
        _require(
            self.lr_schedule != "cosine" or self.min_learning_rate <= self.learning_rate,
            f"train.min_learning_rate={self.min_learning_rate} exceeds train.learning_rate={self.learning_rate}",
        )
        if self.max_cpu_minutes is not None:
            _require(
                self.max_cpu_minutes > 0,
                f"train.max_cpu_minutes must be positive, got {self.max_cpu_minutes}",
            )
        for name in (
            "log_every",
            "validate_every",
            "checkpoint_every",
            "keep_last",
            "max_nonfinite_steps",
            "aux_every",
        ):
            _require(getattr(self, name) >= 1, f"train.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExperimentConfig(_ModelOnMels):
    """Everything a training run needs; written to the run directory and into every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mel: MelConfig = field(default_factory=MelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def vocoder(self) -> VocoderConfig:
        return VocoderConfig(model=self.model, mel=self.mel)

    def validate(self) -> None:
        super().validate()
        _require(
            self.data.segment_length % self.model.n_group == 0,
            f"data.segment_length ({self.data.segment_length}) must be divisible by "
            f"model.n_group ({self.model.n_group})",
        )
