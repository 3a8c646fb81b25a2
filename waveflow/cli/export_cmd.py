"""``waveflow export CKPT OUT.onnx|OUT.pt``: the synthesis graph of a checkpoint as ONNX or TorchScript.

The format follows OUT's suffix: ``.onnx`` is ONNX (needs the onnx package, ``pip install
waveflow[export]``; run it with onnxruntime, e.g. ``waveflow synthesize --onnx OUT.onnx``), ``.pt``,
``.ts`` or ``.jit`` is TorchScript (``torch.jit.load``). The graph is ``(mel, z) -> audio``:

    mel   (B, n_mels, frames)                  float32
    z     (B, n_group, frames * hop / n_group) float32, e.g. sigma * standard normal noise
    audio (B, frames * hop)                    float32

with the batch and time axes dynamic; the checkpoint's model and mel settings travel inside the file
(ONNX ``metadata_props`` / the archive's ``waveflow.json``). It matches the checkpoint's synthesis
within 1e-4. Only WaveGlow's architecture exports (not the compact family). The file is written
atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".jit": "torchscript"}
DEFAULT_OPSET = 17
DEFAULT_EXAMPLE_FRAMES = 8


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint's synthesis graph (mel, z) -> audio to ONNX or TorchScript",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="waveflow or NVIDIA WaveGlow checkpoint")
    parser.add_argument("output", type=Path, help="file to write: .onnx (ONNX) or .pt/.ts/.jit (TorchScript)")
    parser.add_argument("--opset", type=int, help=f"ONNX opset version (default {DEFAULT_OPSET}; ONNX only)")
    parser.add_argument(
        "--example-frames",
        type=int,
        help=f"mel frames of the example the ONNX graph is traced on (default {DEFAULT_EXAMPLE_FRAMES}; "
        "the axes stay dynamic; ONNX only)",
    )
    parser.set_defaults(func=run)
    return parser


def export_format(path: Path) -> str:
    """``"onnx"`` or ``"torchscript"`` from ``path``'s suffix; :class:`CLIError` for anything else."""
    from waveflow.cli import CLIError

    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise CLIError(
            f"{path}: unknown export format {suffix or '(no suffix)'!r}; name the file .onnx (ONNX) or "
            f".pt/.ts/.jit (TorchScript)"
        )
    return FORMATS[suffix]


def run(args: argparse.Namespace) -> int:
    from waveflow.cli import CLIError
    from waveflow.cli._inputs import is_quiet, load_vocoder, make_output_file, writing
    from waveflow.infer.export import export_onnx, export_torchscript

    out = Path(args.output)
    fmt = export_format(out)
    if fmt == "torchscript":
        given = [
            f
            for f, v in (("--opset", args.opset), ("--example-frames", args.example_frames))
            if v is not None
        ]
        if given:
            raise CLIError(f"{', '.join(given)} apply to ONNX export only, not to TorchScript ({out.suffix})")
    else:
        opset = DEFAULT_OPSET if args.opset is None else args.opset
        example_frames = DEFAULT_EXAMPLE_FRAMES if args.example_frames is None else args.example_frames
        if opset < 13:  # the exporter's floor for the graph's operators (dynamic slicing, matmul)
            raise CLIError(f"--opset must be >= 13, got {opset}")
        if example_frames < 1:
            raise CLIError(f"--example-frames must be >= 1, got {example_frames}")
        try:
            import onnx  # noqa: F401  (checked before the model is loaded)
        except ImportError:
            raise CLIError(
                "ONNX export needs the onnx package: pip install onnx (or waveflow[export])"
            ) from None
    make_output_file(out)  # before the model is loaded; creates the folder
    vocoder = load_vocoder(args.checkpoint, device="cpu", precision="fp32", engine="plain")
    # Written next to the target and renamed over it: a failed export leaves nothing half-written.
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    try:
        with writing(out):
            if fmt == "onnx":
                export_onnx(vocoder, tmp, opset=opset, example_frames=example_frames)
            else:
                export_torchscript(vocoder, tmp)
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if not is_quiet():
        what = f"ONNX, opset {opset}" if fmt == "onnx" else "TorchScript"
        print(
            f"wrote {out} ({what}, {out.stat().st_size / 2**20:.1f} MiB): inputs mel (B, {vocoder.n_mels}, frames) "
            f"and z (B, {vocoder.n_group}, frames * {vocoder.hop_length // vocoder.n_group}), output audio "
            f"(B, frames * {vocoder.hop_length}) at {vocoder.sample_rate} Hz",
            file=sys.stderr,
        )
    return 0
