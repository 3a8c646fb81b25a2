"""``waveflow resynthesize CKPT in.wav out.wav``: copy synthesis (audio -> mel -> audio).

The mel is computed with the checkpoint's own front end, so this is the quickest way to hear what
a checkpoint can do on a given voice. Input at another sample rate is resampled to the
checkpoint's (with a note); the output has the input's duration at the checkpoint's rate, as
16-bit PCM, written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from waveflow.cli._inputs import add_device_arguments
    from waveflow.cli.synthesize import add_synthesis_arguments

    parser = subparsers.add_parser(
        "resynthesize",
        help="copy synthesis: compute the mel of a recording and vocode it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="waveflow or NVIDIA WaveGlow checkpoint")
    parser.add_argument("input", type=Path, help="audio file (wav, flac, ...)")
    parser.add_argument("output", type=Path, help="WAV file to write")
    add_synthesis_arguments(parser)
    add_device_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def load_at_rate(path: Path, sample_rate: int):
    """Read ``path`` at ``sample_rate`` -> float32 ``(T,)``, with a note when it had to be resampled."""
    from waveflow.audio.io import load_audio
    from waveflow.cli._inputs import notice

    audio, file_rate = load_audio(path)
    if file_rate != sample_rate:
        notice(f"{path} is {file_rate} Hz; resampling to the checkpoint's {sample_rate} Hz")
        audio, _ = load_audio(path, sample_rate)
    return audio


def run(args: argparse.Namespace) -> int:
    import torch

    from waveflow.audio.io import write_wav
    from waveflow.cli._inputs import (
        check_output_file,
        load_vocoder,
        make_output_file,
        mel_of,
        note_clipped,
        resolve_device,
        writing,
    )
    from waveflow.cli.synthesize import check_synthesis_arguments, run_seed

    check_synthesis_arguments(args)
    check_output_file(args.output)  # before the model is loaded
    vocoder = load_vocoder(
        args.checkpoint, device=resolve_device(args.device), precision=args.precision, engine=args.engine
    )
    audio = load_at_rate(args.input, vocoder.sample_rate)
    mel = mel_of(vocoder, audio)  # (n_mels, frames)
    # A CPU generator: the same seed gives the same noise on any device.
    generator = torch.Generator().manual_seed(run_seed(args.seed))
    out, _ = vocoder(mel, sigma=args.sigma, denoise=args.denoiser_strength, generator=generator)
    # The vocoder returns frames * hop_length samples, a little more than the recording.
    out = out[0, : audio.shape[0]].detach().to("cpu", torch.float32).numpy()
    with writing(make_output_file(args.output)):
        note_clipped(args.output, write_wav(args.output, out, vocoder.sample_rate), out.shape[0])
    print(f"wrote {args.output} ({out.shape[0] / vocoder.sample_rate:.2f} s at {vocoder.sample_rate} Hz)")
    return 0
