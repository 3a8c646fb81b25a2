"""``waveflow encode CKPT in.wav out.npz`` and ``waveflow decode CKPT in.npz out.wav``.

The flow is invertible: ``encode`` maps a recording (given its own mel) to the latent ``z`` that
the model would have to draw to produce exactly that recording, and ``decode`` maps it back.
The ``.npz`` holds (no pickled objects)::

    z            float32 (n_group, frames * hop_length / n_group)
    mel          float32 (n_mels, frames), the checkpoint's front end applied to the audio
    num_samples  length of the recording at the checkpoint's rate (the audio is zero-padded to
                 frames * hop_length before encoding; decode trims it back)
    sample_rate  the checkpoint's sample rate
    metadata     JSON text: checkpoint path, waveflow version, source file, model config

``decode`` writes 16-bit PCM; ``--raw out.npy`` also saves the float32 audio, which equals the
(resampled) recording up to float rounding.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from waveflow.errors import InputError

_FIELDS = ("z", "mel", "num_samples", "sample_rate", "metadata")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from waveflow.cli._inputs import add_device_arguments

    encode = subparsers.add_parser(
        "encode",
        help="map a recording to its latent z (exactly invertible with decode)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("checkpoint", type=Path, help="waveflow or NVIDIA WaveGlow checkpoint")
    encode.add_argument("input", type=Path, help="audio file")
    encode.add_argument("output", type=Path, help=".npz file to write")
    add_device_arguments(encode, precision=False)
    encode.set_defaults(func=run_encode)

    decode = subparsers.add_parser(
        "decode",
        help="map a latent .npz written by encode back to audio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("checkpoint", type=Path, help="the checkpoint that encoded the file")
    decode.add_argument("input", type=Path, help=".npz written by waveflow encode")
    decode.add_argument("output", type=Path, help="WAV file to write (16-bit PCM)")
    decode.add_argument("--raw", type=Path, metavar="OUT.npy", help="also save the float32 audio")
    add_device_arguments(decode, precision=False)
    decode.set_defaults(func=run_decode)


def _numpy(x):
    import torch

    return x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else x


def run_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from waveflow import __version__
    from waveflow.cli._inputs import (
        atomic_write,
        check_output_file,
        load_vocoder,
        make_output_file,
        mel_of,
        resolve_device,
        writing,
    )
    from waveflow.cli.resynthesize import load_at_rate

    check_output_file(args.output)  # before the model is loaded
    vocoder = load_vocoder(args.checkpoint, device=resolve_device(args.device))
    audio = load_at_rate(args.input, vocoder.sample_rate)  # (T,)
    mel = mel_of(vocoder, audio)  # (n_mels, frames)
    num_frames = mel.shape[1]
    # The model maps exactly frames * hop_length samples to z; pad the tail with silence.
    padded = np.zeros(num_frames * vocoder.hop_length, dtype=np.float32)
    padded[: audio.shape[0]] = audio[: padded.shape[0]]
    z = np.asarray(_numpy(vocoder.encode(padded, mel)), dtype=np.float32)
    z = z.reshape(vocoder.model.n_group, -1)  # (1, n_group, T / n_group) -> (n_group, T / n_group)
    metadata = {
        "checkpoint": str(args.checkpoint),
        "source": str(args.input),
        "waveflow_version": __version__,
        "config": vocoder.model.config.to_dict(),
        "mel_config": vocoder.mel_config.to_dict(),
    }
    arrays = {
        "z": z,
        "mel": mel,
        "num_samples": np.int64(audio.shape[0]),
        "sample_rate": np.int64(vocoder.sample_rate),
        "metadata": np.array(json.dumps(metadata)),
    }
    with writing(make_output_file(args.output)):
        atomic_write(args.output, lambda handle: np.savez(handle, **arrays))
    print(f"wrote {args.output}: z {tuple(z.shape)}, mel {tuple(mel.shape)}, {audio.shape[0]} samples")
    return 0


def _read_latent(path: Path) -> dict:
    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"latent file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in _FIELDS if k in data}
    except Exception as exc:
        # np.load raises ValueError, OSError, EOFError, BadZipFile, ... for foreign or truncated files.
        raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in _FIELDS if k not in fields]
    if missing:
        raise ValueError(f"{path} lacks {missing}; was it written by `waveflow encode`?")
    for key in ("z", "mel"):
        array = fields[key]
        if array.ndim != 2 or array.dtype.kind not in "fiu":
            raise InputError(
                f"{path}: {key} is {array.dtype} of shape {array.shape}; expected a 2-D float array"
            )
        if not np.isfinite(array).all():
            raise InputError(f"{path}: {key} contains {int((~np.isfinite(array)).sum())} NaN/Inf value(s)")
    try:
        metadata = json.loads(str(fields["metadata"])) if fields["metadata"].ndim == 0 else None
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise InputError(f"{path}: metadata is not the JSON object `waveflow encode` writes")
    fields["metadata"] = metadata
    return fields


def _count(fields: dict, key: str, path: Path, *, low: int, high: int) -> int:
    """The integer scalar ``fields[key]``, refused unless ``low <= value <= high``."""
    value = fields[key]
    if value.shape != () or value.dtype.kind not in "iu":
        raise InputError(f"{path}: {key} is {value.dtype} of shape {value.shape}; expected one integer")
    number = int(value)
    if not low <= number <= high:
        raise InputError(f"{path}: {key} is {number}; expected {low} to {high}")
    return number


def run_decode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from waveflow.audio.io import write_wav
    from waveflow.cli import CLIError
    from waveflow.cli._inputs import (
        atomic_write,
        check_output_file,
        load_vocoder,
        make_output_file,
        note_clipped,
        notice,
        resolve_device,
        writing,
    )

    latent = _read_latent(args.input)
    z, mel = latent["z"].astype(np.float32), latent["mel"].astype(np.float32)
    sample_rate = _count(latent, "sample_rate", args.input, low=1, high=10_000_000)
    outputs = [args.output] + ([args.raw] if args.raw is not None else [])
    for output in outputs:  # before the model is loaded
        check_output_file(output)
    vocoder = load_vocoder(args.checkpoint, device=resolve_device(args.device))
    # The model gives frames * hop_length samples; num_samples trims the padding encode added.
    num_samples = _count(latent, "num_samples", args.input, low=0, high=mel.shape[1] * vocoder.hop_length)
    if sample_rate != vocoder.sample_rate:
        raise CLIError(
            f"{args.input} was encoded at {sample_rate} Hz but the checkpoint runs at {vocoder.sample_rate} Hz"
        )
    expected_z = (vocoder.model.n_group, mel.shape[-1] * vocoder.hop_length // vocoder.model.n_group)
    if mel.ndim != 2 or mel.shape[0] != vocoder.n_mels or z.shape != expected_z:
        raise CLIError(
            f"{args.input} holds z {z.shape} and mel {mel.shape}; this checkpoint needs mel "
            f"({vocoder.n_mels}, frames) and z {expected_z}"
        )
    stored = latent["metadata"]
    if stored.get("config") != vocoder.model.config.to_dict():
        notice(f"{args.input} was encoded by another model ({stored.get('checkpoint')}); decoding anyway")
    audio = vocoder.decode(torch.from_numpy(z)[None], torch.from_numpy(mel)[None])  # (1, T)
    audio = np.asarray(_numpy(audio), dtype=np.float32).reshape(-1)[:num_samples]
    with writing(make_output_file(args.output)):
        note_clipped(args.output, write_wav(args.output, audio, vocoder.sample_rate), audio.shape[0])
    if args.raw is not None:
        with writing(make_output_file(args.raw)):
            atomic_write(args.raw, lambda handle: np.save(handle, audio, allow_pickle=False))
    print(f"wrote {args.output} ({num_samples} samples at {vocoder.sample_rate} Hz)")
    return 0
