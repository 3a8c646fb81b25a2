"""``train.init_from``: start a training run from another model's weights (fine-tuning).

The source is a checkpoint file or a registered model name (``waveflow pretrained``; a file of that
name in the working folder wins, as everywhere on the command line):

* a waveflow checkpoint: a training checkpoint (``ckpt_*.pt``, ``last.pt``, ``best.pt``) or a
  packaged model (``waveflow convert``, the shipped ``default``);
* an NVIDIA WaveGlow checkpoint in either of NVIDIA's formats (NVIDIA/waveglow's pickled
  ``glow.WaveGlow`` training checkpoints, DeepLearningExamples/torch.hub files, bare state dicts),
  read by the safe reader (:mod:`waveflow.safe_load`): nothing in the file is run.

**Only the weights are taken**: the optimizer starts afresh, the step at 0 (warmup and the
learning-rate schedule from their beginning), the data order from the first epoch.

**Which weights.** A waveflow training checkpoint of a run with ``train.ema_decay`` holds the
weight average as its model and the raw training weights beside the optimizer state; packaged
models of such runs hold only the average (``weight_average`` in their metadata). The **average is
used** (it is what validation scored and what ``waveflow convert`` ships); the raw weights are not.
Other files hold one set of weights, which is used. The run's log says which.

**Architecture.** The run's ``model`` settings must equal the source's, every key (the weight-norm
parametrisation excepted: folded weights are split into ``g = ||W||`` and ``v = W``, or ``g`` and
``v`` folded, as the run's ``model.weight_norm`` asks; the function is unchanged). A waveflow
source also fixes the ``mel`` settings (its weights were learned on those mels). On a mismatch
:class:`InitFromMismatchError` names each differing key (source vs run) and each tensor that would
not fit (expected vs found shape), before anything is written. NVIDIA files carry no mel settings:
NVIDIA trained on Tacotron2 mels (``presets.tacotron2_mel()``), and a run using others is told so.

**Resume.** ``--resume`` of a run that has a checkpoint continues from it; ``train.init_from`` is
then not read again (the file may have changed or gone). A description of the source (the name or
path given, the file's path and sha256, its format, which weights, its training step) goes into
the log's ``start`` record and the metadata of every checkpoint of the run (``init_from``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import parametrize

from waveflow import presets, pretrained
from waveflow.checkpoint import FORMAT_NAME, Checkpoint, read_checkpoint
from waveflow.config import ExperimentConfig, flatten_settings
from waveflow.errors import InputError
from waveflow.interop import nvidia
from waveflow.model import WaveGlow
from waveflow.safe_load import check_finite, expected_shapes

_MAX_TENSORS = 12  # mismatched tensors named in one message


class InitFromMismatchError(InputError):
    """The run's config does not fit the model that ``train.init_from`` names."""


@dataclass
class InitWeights:
    """The weights ``train.init_from`` names, checked against the run's config; see the module docstring."""

    spec: str
    path: Path
    sha256: str
    source_format: str
    weights: str  # "average" (EMA) or "only" (the file's one set of weights)
    step: int | None
    checkpoint: Checkpoint
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """Plain values for the log and checkpoint metadata."""
        return {
            "spec": self.spec,
            "path": str(self.path),
            "sha256": self.sha256,
            "format": self.source_format,
            "weights": self.weights,
            "step": self.step,
        }

    def describe(self) -> str:
        which = {
            "average": "its weight average (EMA), not the raw training weights",
            "only": "its only set of weights (it holds no weight average)",
        }[self.weights]
        at = f", step {self.step}" if self.step is not None else ""
        return (
            f"initialised the model from train.init_from={self.spec} ({self.path}, {self.source_format}{at}, "
            f"sha256 {self.sha256[:12]}...): {which}; fresh optimizer, step 0"
        )

    def load_into(self, model: WaveGlow) -> None:
        """Copy the weights into ``model`` (built from the run's config), converting the weight-norm
        parametrisation if the run's differs from the file's. Drops the file's tensors afterwards."""
        ckpt = self.checkpoint
        stored_wn = ckpt.config.model.weight_norm and not ckpt.weight_norm_folded  # the file stores g, v
        if stored_wn == model.config.weight_norm:
            state = ckpt.state_dict
        else:
            plain = ckpt.build_model().remove_weight_norm().state_dict() if stored_wn else ckpt.state_dict
            state = _split_weight_norm(model, plain)
        model.load_state_dict(state, strict=True)
        with torch.no_grad():  # g * v / ||v|| is NaN for an all-zero row: the weights in use must be finite
            used = {
                f"{name}.weight": module.weight
                for name, module in model.named_modules()
                if parametrize.is_parametrized(module, "weight")
            }
        check_finite({**dict(model.named_parameters()), **used}, f"{self.path} (in the run's model)")
        ckpt.state_dict.clear()
        if ckpt.training_state is not None:
            ckpt.training_state.clear()


def _split_weight_norm(model: WaveGlow, plain: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``plain`` (folded weights ``W``) in the layout of ``model``'s weight-normed convolutions:
    ``g = ||W||`` (per output channel) and ``v = W``, through the parametrisation's own inverse."""
    state = dict(plain)
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight") and f"{name}.weight" in state:
            weight = state.pop(f"{name}.weight")
            originals = module.parametrizations.weight[0].right_inverse(weight)
            for i, tensor in enumerate(originals):
                state[f"{name}.parametrizations.weight.original{i}"] = tensor
    return state


def resolve_source(spec: str) -> Path:
    """The file ``train.init_from`` names: a path, else a registered model's shipped file."""
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir():
            raise InputError(f"train.init_from={spec} is a folder; name the checkpoint file")
        return path
    if pretrained.is_registered(spec):
        return pretrained.resolve(spec)
    raise InputError(
        f"train.init_from={spec}: no such file, and not a registered model ({', '.join(pretrained.names())})"
    )


def _differences(source: dict[str, Any], run: dict[str, Any], prefix: str) -> list[str]:
    a, b = flatten_settings(source, prefix), flatten_settings(run, prefix)
    return [
        f"{key}: checkpoint {a.get(key)!r}, run {b.get(key)!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def _tensor_mismatches(ckpt: Checkpoint, config: ExperimentConfig) -> list[str]:
    """Each tensor of the file that would not load into the run's model (in the file's parametrisation)."""
    stored = ckpt.state_dict
    run_model = config.model.replace(weight_norm=ckpt.config.model.weight_norm)
    expected = expected_shapes(run_model, ckpt.weight_norm_folded)
    name = nvidia.nvidia_key if ckpt.source_format != FORMAT_NAME else (lambda k: k)
    problems = [
        f"{name(key)}: expected {tuple(shape)}, found {tuple(stored[key].shape)}"
        for key, shape in expected.items()
        if key in stored and tuple(stored[key].shape) != tuple(shape)
    ]
    problems += [
        f"{name(key)}: expected {tuple(shape)}, missing"
        for key, shape in expected.items()
        if key not in stored
    ]
    problems += [
        f"{name(key)}: unexpected (the run's model has no such tensor)"
        for key in stored
        if key not in expected
    ]
    return problems


def read_init_weights(spec: str, config: ExperimentConfig) -> InitWeights:
    """Read and check the weights that ``train.init_from=spec`` names for a run of ``config``.

    Raises ``InputError`` for a name that is neither a file nor a registered model,
    :class:`~waveflow.errors.CheckpointError` for a file that cannot be read safely, and
    :class:`InitFromMismatchError` when the run's config does not fit the file's model.
    """
    path = resolve_source(spec)
    ckpt = read_checkpoint(path, nvidia_mel=config.mel, check_mel=False)
    source_model = ckpt.config.model.replace(weight_norm=config.model.weight_norm).to_dict()
    differences = _differences(source_model, config.model.to_dict(), "model.")
    notes: list[str] = []
    if ckpt.source_format == FORMAT_NAME:
        differences += _differences(ckpt.config.mel.to_dict(), config.mel.to_dict(), "mel.")
    else:
        mel_changes = _differences(presets.tacotron2_mel().to_dict(), config.mel.to_dict(), "mel.")
        if mel_changes:
            notes.append(
                f"{path} is an NVIDIA checkpoint, which records no mel settings; NVIDIA trained on Tacotron2 "
                f"mels, and this run's differ ({'; '.join(c.replace('checkpoint', 'Tacotron2') for c in mel_changes)})"
            )
    if differences:
        tensors = _tensor_mismatches(ckpt, config)
        more = f"; and {len(tensors) - _MAX_TENSORS} more" if len(tensors) > _MAX_TENSORS else ""
        weights = (
            f" Tensors that do not fit the run's model ({len(tensors)}): {'; '.join(tensors[:_MAX_TENSORS])}{more}."
            if tensors
            else ""
        )
        raise InitFromMismatchError(
            f"train.init_from={spec} ({path}): the run's config does not match the checkpoint's model. "
            f"Settings that differ ({len(differences)}): {'; '.join(differences)}.{weights} "
            f"Use the checkpoint's model and mel settings (`waveflow inspect {path}` prints them)."
        )
    if ckpt.source_format == FORMAT_NAME:
        state = ckpt.training_state
        averaged = ("ema" in state or "raw_state_dict" in state) if state is not None else False
        averaged = averaged or ckpt.metadata.get("weight_average") is True
    else:
        averaged = False
    step = ckpt.training_step
    if step is None and isinstance(ckpt.metadata.get("training_step"), int):
        step = ckpt.metadata["training_step"]  # a packaged model: the step it was converted at
    return InitWeights(
        spec=spec,
        path=path.resolve(),
        sha256=pretrained.sha256_of(path),
        source_format=ckpt.source_format,
        weights="average" if averaged else "only",
        step=step,
        checkpoint=ckpt,
        notes=notes,
    )
