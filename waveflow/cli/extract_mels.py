"""``waveflow extract-mels (--checkpoint CKPT | --preset NAME) INPUT... -o OUTDIR``: audio -> mel files.

Writes ``OUTDIR/<stem>.npy`` (or ``.pt``) holding float32 ``(n_mels, frames)`` (``(frames, n_mels)``
with ``--time-first``) in the convention of the checkpoint (its stored mel settings) or of a named
preset: ``tacotron2`` (NVIDIA Tacotron2/WaveGlow), ``hifigan`` (jik876/hifi-gan), ``espnet``
(ESPnet2/ParallelWaveGAN, before their mean/variance normalisation). These are the targets to
train a TTS acoustic model on for this vocoder. Audio at another sample rate is resampled to the
convention's rate (with a note). A file that cannot be read is reported at the end and the others
are still written (exit code 1); every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESETS = ("tacotron2", "hifigan", "espnet")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "extract-mels",
        help="compute mel spectrograms of audio files in a checkpoint's or preset's convention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="use this checkpoint's mel settings")
    source.add_argument("--preset", choices=PRESETS, help="use a named mel convention")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="audio files, folders or glob patterns")
    parser.add_argument("-o", "--output-dir", type=Path, required=True, help="folder for the mel files")
    parser.add_argument(
        "--filelist", type=Path, help="file with one audio path per line ('path|text' is fine)"
    )
    parser.add_argument(
        "--format", choices=("npy", "pt"), default="npy", help="output file type (default npy)"
    )
    parser.add_argument(
        "--time-first", action="store_true", help="write (frames, n_mels) instead of (n_mels, frames)"
    )
    parser.set_defaults(func=run)
    return parser


def _mel_config(args: argparse.Namespace):
    from waveflow import presets

    if args.preset is not None:
        return {
            "tacotron2": presets.tacotron2_mel,
            "hifigan": presets.hifigan_mel,
            "espnet": presets.espnet_mel,
        }[args.preset]()
    from waveflow.checkpoint import read_checkpoint
    from waveflow.cli._inputs import check_checkpoint_path

    # Every check of a load (unsafe pickles, bombs, shapes, NaN), without building the model.
    return read_checkpoint(check_checkpoint_path(args.checkpoint)).config.mel


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from waveflow.audio.features import MelSpectrogram
    from waveflow.audio.io import load_audio
    from waveflow.cli._inputs import (
        AUDIO_EXTENSIONS,
        Failures,
        atomic_write,
        check_output_dir,
        collect_inputs,
        make_output_dir,
        notice,
        progress_disabled,
        writing,
    )

    files = collect_inputs(args.inputs, args.filelist, AUDIO_EXTENSIONS, what="audio input(s)")
    check_output_dir(args.output_dir)  # before the checkpoint is read
    mel_config = _mel_config(args)
    front_end = MelSpectrogram.from_config(mel_config)
    out_dir = make_output_dir(args.output_dir)
    target_rate = mel_config.sample_rate
    resampled_rates: set[int] = set()
    failures = Failures()

    for path in tqdm(files, desc="extract-mels", unit="file", file=sys.stderr, disable=progress_disabled()):
        try:
            audio, sample_rate = load_audio(path)
            if sample_rate != target_rate:
                if sample_rate not in resampled_rates:
                    resampled_rates.add(sample_rate)
                    notice(f"resampling {sample_rate} Hz input to {target_rate} Hz (first: {path})")
                audio, _ = load_audio(path, target_rate)
            with torch.no_grad():
                mel = front_end(torch.from_numpy(audio))  # (n_mels, frames)
        except ValueError as exc:
            failures.add(path, exc)
            continue
        if args.time_first:
            mel = mel.T.contiguous()  # (n_mels, frames) -> (frames, n_mels)
        target = out_dir / f"{path.stem}.{args.format}"
        with writing(target):  # a failed write stops the run: the next would fail too
            if args.format == "npy":
                array = mel.numpy().astype(np.float32)
                atomic_write(target, lambda handle, a=array: np.save(handle, a, allow_pickle=False))
            else:
                atomic_write(target, lambda handle, m=mel: torch.save(m.to(torch.float32).clone(), handle))

    written = len(files) - len(failures.items)
    if written:
        print(f"wrote {written} mel file(s) to {out_dir}", file=sys.stderr)
    return failures.report("extract-mels", len(files))
