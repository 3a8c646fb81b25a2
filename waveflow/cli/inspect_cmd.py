"""``waveflow inspect CKPT [--json]``: what a checkpoint holds, without running it.

Reports the file format (waveflow, NVIDIA/waveglow original, DeepLearningExamples/torch.hub, bare
NVIDIA state dict), the model and mel configuration, the parameter count with and without the
weight-norm gains ``g`` (NVIDIA's 87.73 M for ``waveglow_256channels`` excludes them), the
receptive field, the sample rate and, when present, the training step and metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

FORMAT_NAMES = {
    "waveflow": "waveflow checkpoint",
    "nvidia-original": "NVIDIA/waveglow original (pickled glow.WaveGlow, read through an allow list)",
    "nvidia-dle": "NVIDIA DeepLearningExamples / torch.hub",
    "nvidia-state-dict": "bare NVIDIA state dict",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect",
        help="show a checkpoint's format, configuration, size and training state",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="waveflow or NVIDIA WaveGlow checkpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)
    return parser


def _plain(value: Any) -> Any:
    """JSON-friendly copy of metadata / training-state summaries (tensors become shape strings)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else f"tensor{tuple(value.shape)}"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def describe(path: Path) -> dict[str, Any]:
    """Everything ``inspect`` prints, as a JSON-friendly dict.

    The file goes through the checks of every load (:func:`waveflow.checkpoint.read_checkpoint`):
    an unreadable, unsafe, inconsistent or non-finite file raises ``CheckpointError`` (exit 3).
    """
    from waveflow.checkpoint import FORMAT_NAME, read_checkpoint
    from waveflow.cli._inputs import check_checkpoint_path

    path = check_checkpoint_path(path)
    ckpt = read_checkpoint(path, check_mel=False)  # NVIDIA files: described even if tacotron2 mels do not fit
    config = ckpt.config
    info: dict[str, Any] = {"path": str(path), "file_bytes": path.stat().st_size}
    if ckpt.source_format == FORMAT_NAME:
        training = ckpt.training_state or {}
        info.update(
            format=FORMAT_NAME,
            format_version=ckpt.format_version,
            waveflow_version=ckpt.waveflow_version,
            mel_source="stored in the checkpoint",
            training_step=ckpt.training_step,
            training_state_keys=sorted(map(str, training)),
            metadata=_plain(ckpt.metadata),
        )
    else:
        info.update(
            format=ckpt.source_format,
            mel_source="assumed tacotron2 (NVIDIA files carry no mel settings)",
            training_step=ckpt.training_step,
            metadata=_plain(ckpt.metadata),
        )
    info["format_name"] = FORMAT_NAMES.get(info["format"], info["format"])
    # NVIDIA files after remove_weightnorm come as a model without weight norm: "folded" to the user.
    folded = ckpt.weight_norm_folded if ckpt.source_format == FORMAT_NAME else not config.model.weight_norm

    model = ckpt.build_model()
    stored = sum(p.numel() for p in model.parameters())
    # Weight norm stores w = g * v / ||v||: the gains g (parametrizations...original0) are the extra.
    gains = sum(p.numel() for name, p in model.named_parameters() if name.endswith("original0"))
    info["parameters"] = {
        "without_weight_norm": stored - gains,
        "with_weight_norm": None if folded else stored,
        "weight_norm_folded": folded,
    }
    info["sample_rate"] = config.mel.sample_rate
    info["receptive_field_samples"] = model.receptive_field
    info["receptive_field_ms"] = 1000.0 * model.receptive_field / config.mel.sample_rate
    info["config"] = config.to_dict()
    return info


def _text(info: dict[str, Any]) -> str:
    model, mel = info["config"]["model"], info["config"]["mel"]
    wn = model["wavenet"]
    params = info["parameters"]
    version = (
        f", format {info['format_version']}, written by waveflow {info['waveflow_version']}"
        if info["format"] == "waveflow"
        else ""
    )
    with_wn = (
        f"{params['with_weight_norm']:,} stored with weight-norm gains"
        if params["with_weight_norm"] is not None
        else "weight norm folded"
    )
    f_max = mel["f_max"] if mel["f_max"] is not None else mel["sample_rate"] / 2
    lines = [
        f"file          {info['path']} ({info['file_bytes'] / 1e6:.1f} MB)",
        f"format        {info['format_name']}{version}",
        f"model         {model['n_flows']} flows, n_group {model['n_group']}, early every {model['n_early_every']} "
        f"size {model['n_early_size']}, {model['coupling']} coupling, {model['mixing']} mixing, "
        f"WN {wn['n_layers']} layers x {wn['n_channels']} channels (kernel {wn['kernel_size']})"
        + (
            f", {model['conditioning']} conditioning"
            if model.get("conditioning", "upsample") != "upsample"
            else ""
        )
        + (
            f", {model['source']} source{' (direct)' if model.get('source_direct') else ''}"
            if model.get("source", "none") != "none"
            else ""
        ),
        f"parameters    {params['without_weight_norm']:,} without weight-norm gains ({with_wn})",
        f"sample rate   {info['sample_rate']} Hz",
        f"mel           {mel['n_mels']} {mel['mel_scale']} mels {mel['f_min']:g}-{f_max:g} Hz, n_fft {mel['n_fft']}, "
        f"win {mel['win_length']}, hop {mel['hop_length']}, {'centred' if mel['center'] else 'uncentred'} "
        f"{mel['pad_mode']}, {'magnitude' if mel['power'] == 1.0 else 'power'}, {mel['log']} floor "
        f"{mel['log_floor']:g} [{info['mel_source']}]",
        f"receptive     {info['receptive_field_samples']:,} samples ({info['receptive_field_ms']:.1f} ms)",
    ]
    if info.get("training_step") is not None:
        lines.append(f"training      step {info['training_step']}")
    for key, value in (info.get("metadata") or {}).items():
        lines.append(f"metadata      {key}: {json.dumps(value) if not isinstance(value, str) else value}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = describe(args.checkpoint)
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0
