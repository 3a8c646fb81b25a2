"""Export the synthesis direction to TorchScript and ONNX, with the noise as an explicit input.

Random number generation does not export (and deployments want to own it), so the exported graph
is ``(mel, z) -> audio``::

    mel   (B, n_mels, frames)                 float32
    z     (B, n_group, frames * hop / n_group) float32, e.g. sigma * standard normal
    audio (B, frames * hop)                   float32

with the batch and time axes dynamic. :class:`WaveGlowInference` is a plain, scriptable rewrite of
``WaveGlow.decode``: weight norm folded, the steps stored in inverse order, and each step's
pointwise maps after the coupling (inverse 1x1 convolution, inverse ActNorm, channel reversal)
precomputed in float64 as one matrix and one shift, ``x = M @ y + shift``. Exported models are
always float32; lower precision is a matter for the runtime (e.g. TensorRT).

The vocoder and mel settings travel with the file: ``waveflow.json`` in the TorchScript archive
(``torch.jit.load(path, _extra_files={"waveflow.json": ""})``) and ``metadata_props`` in ONNX.
:class:`OnnxVocoder` runs an exported ONNX file with onnxruntime behind the :class:`Vocoder` call
(``audio, lengths = vocoder(mel, lengths, sigma=..., z=...)``, the same noise from the same seed).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from waveflow import __version__
from waveflow.config import MelConfig
from waveflow.errors import CheckpointError
from waveflow.flows import AffineCoupling, EarlyOutputSchedule, FlowStep
from waveflow.flows.coupling import soft_clamp
from waveflow.infer.inputs import SynthesisCall
from waveflow.model import WaveGlow, folded_copy  # noqa: F401 (folded_copy: also imported from here)
from waveflow.nn import WaveNet


class _WaveNetLayer(nn.Module):
    """One gated, dilated layer of :class:`~waveflow.nn.WaveNet` (inference only)."""

    def __init__(self, wavenet: WaveNet, i: int):
        super().__init__()
        self.in_layer = wavenet.in_layers[i]
        self.res_skip_layer = wavenet.res_skip_layers[i]
        self.n_channels = wavenet.n_channels
        self.cond_start = 2 * wavenet.n_channels * i
        self.last = i == wavenet.n_layers - 1

    def forward(self, h: Tensor, cond_all: Tensor, skip: Tensor) -> tuple[Tensor, Tensor]:
        c = self.n_channels
        a = self.in_layer(h) + cond_all[:, self.cond_start : self.cond_start + 2 * c]
        r = self.res_skip_layer(torch.tanh(a[:, :c]) * torch.sigmoid(a[:, c:]))
        if self.last:
            return h, skip + r
        return h + r[:, :c], skip + r[:, c:]


class _WaveNet(nn.Module):
    """:class:`~waveflow.nn.WaveNet` without input checks, as one module list (scriptable)."""

    def __init__(self, wavenet: WaveNet):
        super().__init__()
        self.start = wavenet.start
        self.cond_layer = wavenet.cond_layer
        self.layers = nn.ModuleList([_WaveNetLayer(wavenet, i) for i in range(wavenet.n_layers)])
        self.end = wavenet.end

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.start(x)
        cond_all = self.cond_layer(cond)  # (B, 2 * C * L, T)
        skip = torch.zeros_like(h)  # 0 + s == s exactly, so this matches the eager sum
        for layer in self.layers:
            h, skip = layer(h, cond_all, skip)
        return self.end(skip)


class _InverseStep(nn.Module):
    """Inverse of one :class:`~waveflow.flows.FlowStep`: coupling, then ``x = M @ y + shift``."""

    def __init__(self, step: FlowStep, num_channels: int, block: tuple[int, int]):
        super().__init__()
        coupling = step.coupling
        self.conditioner = _WaveNet(coupling.conditioner)
        self.affine = isinstance(coupling, AffineCoupling)
        clamp = coupling.log_scale_clamp if self.affine else None
        self.use_clamp = clamp is not None
        self.clamp = float(clamp) if clamp is not None else 1.0
        self.swap = bool(coupling.swap)
        self.n_a, self.n_b = coupling.n_a, coupling.n_b
        self.emit_start, self.emit_size = block  # the block of z that joins after this step (size 0: none)
        matrix, shift = _pointwise_inverse(step, num_channels)
        self.register_buffer("mix_inverse", matrix.float())  # (C, C)
        self.register_buffer("shift", shift.float()[:, None])  # (C, 1)

    def forward(self, y: Tensor, cond: Tensor) -> Tensor:
        if self.swap:
            y_a, y_b = y[:, self.n_b :], y[:, : self.n_b]
        else:
            y_a, y_b = y[:, : self.n_a], y[:, self.n_a :]
        out = self.conditioner(y_a, cond)
        if self.affine:
            log_s = out[:, self.n_b :]
            if self.use_clamp:
                log_s = soft_clamp(log_s, self.clamp)
            x_b = (y_b - out[:, : self.n_b]) * torch.exp(-log_s)
        else:
            x_b = y_b - out
        x = torch.cat([x_b, y_a], dim=1) if self.swap else torch.cat([y_a, x_b], dim=1)
        return torch.matmul(self.mix_inverse, x) + self.shift  # (C, C) @ (B, C, T)


@torch.no_grad()
def _pointwise_inverse(step: FlowStep, num_channels: int) -> tuple[Tensor, Tensor]:
    """``(M, shift)`` with ``norm^-1(mix^-1(y)) = M @ y + shift`` per time step, in float64.

    Both maps are affine and act on each time step alone, so probing them with the unit vectors
    and the zero vector (as ``C + 1`` time steps) reads off the matrix and the shift exactly.
    """
    probe = torch.cat(
        [torch.eye(num_channels, dtype=torch.float64), torch.zeros(num_channels, 1, dtype=torch.float64)], 1
    )
    x = probe.unsqueeze(0)  # (1, C, C + 1): columns e_0 .. e_{C-1}, then 0
    for flow in (step.mix, step.norm):
        if flow is not None:
            x, _ = flow.inverse(x)
    shift = x[0, :, num_channels]  # (C,)
    return x[0, :, :num_channels] - shift[:, None], shift


class WaveGlowInference(nn.Module):
    """``(mel (B, n_mels, F), z (B, n_group, F * hop / n_group)) -> audio (B, F * hop)``, scriptable.

    Built from a :class:`WaveGlow` (copied, so the original is untouched); equals
    ``WaveGlow.decode(z, mel)`` up to float rounding.
    """

    def __init__(self, model: WaveGlow):
        super().__init__()
        if model.config.conditioning != "upsample" or model.config.wavenet.separable:
            raise ValueError(
                "export covers WaveGlow's architecture; the compact family cannot be exported yet"
            )
        model = folded_copy(model)
        schedule = model.schedule
        self.n_mels, self.n_group = model.n_mels, model.n_group
        self.upsample = model.upsample.conv
        # The model's inverse plan over a whole sequence (no context to trim), unrolled.
        plan = schedule.inverse_plan(1, [0] * schedule.num_steps)
        self.remaining_start = model.n_group - plan.remaining
        steps = [
            _InverseStep(model.flow.steps[k], schedule.channels[k], plan.blocks.get(k, (0, 0)))
            for k, _, _ in plan.steps
        ]
        self.steps = nn.ModuleList(steps)

    def forward(self, mel: Tensor, z: Tensor) -> Tensor:
        g = self.n_group
        b = z.size(0)
        upsampled = self.upsample(mel)[:, :, : z.size(2) * g]  # (B, n_mels, T): cut the kernel overhang
        cond = upsampled.reshape(b, self.n_mels, -1, g)  # (B, n_mels, T/g, g)
        cond = cond.transpose(2, 3).reshape(b, self.n_mels * g, -1)  # (B, n_mels*g, T/g), channel bin*g + j
        x = z[:, self.remaining_start :]
        for step in self.steps:
            x = step(x, cond)
            if step.emit_size > 0:
                x = torch.cat([z[:, step.emit_start : step.emit_start + step.emit_size], x], dim=1)
        return x.transpose(1, 2).reshape(b, -1)  # (B, g, T/g) -> (B, T/g, g) -> (B, T): sample t*g + j


def _unwrap(vocoder_or_model: Any) -> tuple[WaveGlow, dict[str, Any]]:
    """The model and the metadata to store with it (the full vocoder config when known)."""
    from waveflow.infer.vocoder import Vocoder

    if isinstance(vocoder_or_model, Vocoder):
        model, config = vocoder_or_model.model, {"vocoder": vocoder_or_model.config.to_dict()}
    elif isinstance(vocoder_or_model, WaveGlow):
        model, config = vocoder_or_model, {"model": vocoder_or_model.config.to_dict()}
    else:
        raise ValueError(f"expected a Vocoder or a WaveGlow, got {type(vocoder_or_model).__name__}")
    meta = {
        "waveflow_version": __version__,
        "inputs": {"mel": "(B, n_mels, frames)", "z": "(B, n_group, frames * hop_length / n_group)"},
        "outputs": {"audio": "(B, frames * hop_length)"},
        "n_mels": model.n_mels,
        "n_group": model.n_group,
        "hop_length": model.hop_length,
        **config,
    }
    return model, meta


def _check_target(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    return path


def export_torchscript(vocoder_or_model: Any, path: str | os.PathLike[str]) -> Path:
    """Script :class:`WaveGlowInference` and save it to ``path``; returns the path.

    Load with ``torch.jit.load(path)`` and call ``module(mel, z)``.
    """
    path = _check_target(path)
    model, meta = _unwrap(vocoder_or_model)
    module = WaveGlowInference(model).cpu()
    with warnings.catch_warnings():
        # torch >= 2.9 marks TorchScript deprecated; exporting to it is still what this function is for.
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path), _extra_files={"waveflow.json": json.dumps(meta)})
    return path


def export_onnx(
    vocoder_or_model: Any, path: str | os.PathLike[str], opset: int = 17, *, example_frames: int = 8
) -> Path:
    """Export :class:`WaveGlowInference` to ONNX (inputs ``mel``, ``z``; output ``audio``); returns the path.

    The batch and time axes are dynamic (``batch``, ``frames``, ``groups``, ``samples``); the graph
    is traced once on ``example_frames`` frames. Needs the ``onnx`` package (``pip install
    waveflow[export]``); run it with onnxruntime.
    """
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "ONNX export needs the onnx package: pip install onnx (or waveflow[export])"
        ) from None
    path = _check_target(path)
    model, meta = _unwrap(vocoder_or_model)
    module = WaveGlowInference(model).cpu()
    num_groups = example_frames * model.hop_length // model.n_group
    mel = torch.zeros(1, model.n_mels, example_frames)
    z = torch.zeros(1, model.n_group, num_groups)
    with warnings.catch_warnings():
        # The TorchScript-based exporter (dynamo=False) needs no onnxscript; torch marks it deprecated.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (mel, z),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["mel", "z"],
            output_names=["audio"],
            dynamic_axes={
                "mel": {0: "batch", 2: "frames"},
                "z": {0: "batch", 2: "groups"},
                "audio": {0: "batch", 1: "samples"},
            },
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "waveflow", json.dumps(meta)
    onnx.save(proto, str(path))
    return path


class OnnxVocoder(SynthesisCall):
    """An ONNX file written by :func:`export_onnx`, run with onnxruntime's CPU provider.

    Called like :class:`~waveflow.infer.vocoder.Vocoder`: ``audio, audio_lengths = vocoder(mel,
    lengths, sigma=0.6, denoise=0.0, generator=None, z=None)`` with the same conventions (items of
    one length run together, never on padding; the noise is drawn per item from
    :meth:`latent_stream`, so a seed gives the torch path's audio within the export's float
    tolerance). ``mel_from``/``stats`` convert a TTS front end's mels as ``Vocoder`` does
    (:mod:`waveflow.infer.frontends`). The mel settings come from the file's metadata, so the file
    must have been exported from a :class:`~waveflow.infer.vocoder.Vocoder` (or a checkpoint).
    Raises :class:`~waveflow.errors.CheckpointError` for a file onnxruntime cannot load or without
    waveflow's metadata, and ``ValueError`` when onnxruntime is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mel_from: Any = None,
        stats: Any = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(
                "running an ONNX file needs onnxruntime: pip install onnxruntime (or waveflow[export])"
            ) from None
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"cannot load ONNX model {path}: {type(exc).__name__}: {first}") from None
        meta_text = self.session.get_modelmeta().custom_metadata_map.get("waveflow")
        if meta_text is None:
            raise CheckpointError(f"{path} has no waveflow metadata: export it with waveflow export")
        try:
            meta = json.loads(meta_text)
            mel = meta["vocoder"]["mel"]
            self.mel_config = MelConfig.from_dict(mel)
            self.n_mels, self.n_group, self.hop_length = (
                int(meta[k]) for k in ("n_mels", "n_group", "hop_length")
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{path}: its metadata lacks the mel settings ({type(exc).__name__}: {exc}); "
                f"export a Vocoder or a checkpoint, not a bare WaveGlow"
            ) from None
        model_cfg = meta["vocoder"].get("model", {})
        try:
            self.schedule = EarlyOutputSchedule.compute(
                int(model_cfg["n_flows"]),
                self.n_group,
                int(model_cfg["n_early_every"]),
                int(model_cfg["n_early_size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its metadata lacks the flow's schedule ({exc})") from None
        if self.n_mels != self.mel_config.n_mels or self.hop_length != self.mel_config.hop_length:
            raise CheckpointError(
                f"{path}: inconsistent metadata (n_mels/hop_length differ from the mel settings)"
            )
        self.path = path
        self.meta = meta
        self.check_mel = True
        self.device = torch.device("cpu")
        self._denoiser = None
        self.mel_adapter = None
        self.set_frontend(mel_from, stats)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    def run(self, mel: Tensor, z: Tensor) -> Tensor:
        """The graph itself: ``mel (B, n_mels, F)`` and ``z (B, n_group, F * hop / n_group)`` -> ``audio (B, F * hop)``."""
        feeds = {
            "mel": np.ascontiguousarray(mel.detach().to("cpu", torch.float32).numpy()),
            "z": np.ascontiguousarray(z.detach().to("cpu", torch.float32).numpy()),
        }
        (audio,) = self.session.run(["audio"], feeds)
        return torch.from_numpy(audio)

    def __call__(
        self,
        mel: Any,
        lengths: Any = None,
        sigma: float = 0.6,
        denoise: float = 0.0,
        generator: torch.Generator | None = None,
        z: Any = None,
        latent_order: str = "stream",
    ) -> tuple[Tensor, Tensor]:
        """Synthesize as :meth:`Vocoder.forward <waveflow.infer.vocoder.Vocoder.forward>` (CPU, float32)."""
        return self._call(mel, lengths, sigma, denoise, generator, z, latent_order)

    def _synthesize(self, mel: Tensor, z: Tensor, denoise: float) -> Tensor:
        out = self.run(mel, z)
        return self._get_denoiser()(out, denoise) if denoise > 0 else out

    def _get_denoiser(self) -> Any:
        """NVIDIA's denoiser with the bias spectrum of this graph (zero mel, zero latent)."""
        from waveflow.infer.denoiser import Denoiser

        if self._denoiser is None:
            cfg = self.mel_config
            self._denoiser = Denoiser(
                _OnnxBias(self), n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length
            )
        return self._denoiser


class _OnnxBias:
    """What :class:`~waveflow.infer.denoiser.Denoiser` needs (``BiasSource``), from an :class:`OnnxVocoder`."""

    def __init__(self, vocoder: OnnxVocoder):
        self.vocoder = vocoder
        self.n_mels = vocoder.n_mels

    def infer(self, mel: Tensor, sigma: float = 0.0) -> Tensor:
        if sigma != 0.0:
            raise ValueError("the ONNX bias source runs at sigma = 0 only")
        z = torch.zeros(
            mel.shape[0], self.vocoder.n_group, mel.shape[2] * self.vocoder.hop_length // self.vocoder.n_group
        )
        return self.vocoder.run(mel, z)

    def parameters(self, recurse: bool = True) -> Iterator[Tensor]:
        yield torch.zeros((), dtype=torch.float32)
