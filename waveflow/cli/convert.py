"""``waveflow convert IN.pt OUT.pt``: an NVIDIA WaveGlow checkpoint, or a waveflow training
checkpoint, to a waveflow model file.

A waveflow training checkpoint keeps its model (the weight average, when the run kept one), mel
settings, training step and CPU time; the optimizer and the rest of the training state are
dropped, which is how a model is packaged for inference or shipping (with ``--fold-weight-norm``).

The input may be an NVIDIA/waveglow training checkpoint (a pickled ``glow.WaveGlow``, read through
an allow list so no code from the file runs), a DeepLearningExamples/torch.hub checkpoint or a bare
state dict, optionally xz-compressed. NVIDIA files carry no mel settings; ``--mel-preset`` names the
convention the model was trained on (NVIDIA's own: tacotron2). The output is written atomically.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

MEL_PRESETS = ("tacotron2", "hifigan", "espnet")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert an NVIDIA WaveGlow checkpoint (both formats), or strip a training checkpoint, to a model file",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input", type=Path, help="NVIDIA checkpoint (.pt, or .pt.xz) or waveflow training checkpoint"
    )
    parser.add_argument("output", type=Path, help="waveflow checkpoint to write")
    parser.add_argument(
        "--mel-preset",
        choices=MEL_PRESETS,
        default="tacotron2",
        help="mel convention the model was trained on (default: tacotron2, NVIDIA's)",
    )
    parser.add_argument(
        "--fold-weight-norm",
        action="store_true",
        help="fold weight normalisation into plain weights (inference only; same outputs)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow import presets
    from waveflow.checkpoint import FORMAT_NAME, MelMismatchError, read_checkpoint, save_checkpoint
    from waveflow.cli import CLIError
    from waveflow.cli._inputs import check_checkpoint_path, check_output_file

    src, dst = check_checkpoint_path(args.input), Path(args.output)
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        raise CLIError(f"output {dst} is the input file; choose another path")
    check_output_file(dst)  # before the conversion
    mel = {"tacotron2": presets.tacotron2_mel, "hifigan": presets.hifigan_mel, "espnet": presets.espnet_mel}[
        args.mel_preset
    ]()
    # One read, with every check (unsafe pickles, bombs, shapes against the config, NaN/Inf);
    # the file's format decides what happens next, not whether a first attempt failed.
    try:
        ckpt = read_checkpoint(src, nvidia_mel=mel)
    except MelMismatchError as exc:
        raise CLIError(f"--mel-preset {args.mel_preset} does not fit the model in {src}: {exc}") from None
    # The model as it will be written (folded weights checked for NaN: never write NaN weights).
    model = ckpt.build_model(args.fold_weight_norm)
    if ckpt.source_format == FORMAT_NAME:
        return _strip(ckpt, model, src, dst, args.fold_weight_norm)

    info = ckpt.metadata
    metadata = {"converted_from": src.name, "source_format": ckpt.source_format, **info}
    save_checkpoint(dst, model, mel, metadata=metadata)

    cfg = ckpt.config.model
    wn = cfg.wavenet
    num_params = sum(p.numel() for p in model.parameters())
    weight_norm = "folded" if args.fold_weight_norm or not cfg.weight_norm else "weight_g/weight_v"
    extra = "".join(f", {k} {v}" for k, v in info.items())
    print(f"read      {src} ({ckpt.source_format}{extra})")
    print(
        f"model     {cfg.n_flows} flows, n_group {cfg.n_group}, early every {cfg.n_early_every} "
        f"size {cfg.n_early_size}, WN {wn.n_layers} layers x {wn.n_channels} channels (kernel {wn.kernel_size}), "
        f"{cfg.n_mels} mels, hop {cfg.hop_length}"
    )
    print(f"weights   {num_params:,} parameters, weight norm {weight_norm}")
    print(
        f"mel       {args.mel_preset}: {mel.sample_rate} Hz, n_fft {mel.n_fft}, hop {mel.hop_length}, "
        f"f {mel.f_min:g}-{mel.f_max if mel.f_max is not None else mel.sample_rate / 2:g} Hz"
    )
    print(f"wrote     {dst}")
    return 0


def _strip(ckpt, model, src: Path, dst: Path, fold_weight_norm: bool) -> int:
    """A waveflow checkpoint -> its model, mel settings and provenance, without training state."""
    from waveflow.checkpoint import save_checkpoint

    metadata = {k: v for k, v in ckpt.metadata.items() if k in ("experiment", "cpu_seconds", "init_from")}
    if ckpt.training_state is not None:
        if ckpt.training_step is not None:
            metadata["training_step"] = ckpt.training_step
        metadata["weight_average"] = "ema" in ckpt.training_state
    metadata["converted_from"] = src.name
    save_checkpoint(dst, model, ckpt.config.mel, metadata=metadata)
    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"read      {src} (waveflow{', training step ' + str(metadata['training_step']) if 'training_step' in metadata else ''})"
    )
    print(
        f"weights   {num_params:,} parameters, weight norm {'folded' if fold_weight_norm else 'as trained'}"
    )
    print(f"wrote     {dst} ({dst.stat().st_size / 1e6:.1f} MB)")
    return 0
