"""``waveflow synthesize CKPT INPUT... -o OUTDIR``: mel files -> 16-bit WAV files.

INPUTs are ``.npy``, ``.pt`` or ``.npz`` mel files, folders of them (searched recursively) or glob
patterns, plus ``--filelist`` (one path per line). Each file holds ``(n_mels, frames)`` or
``(1, n_mels, frames)`` (``(frames, n_mels)`` with ``--time-first``) in the checkpoint's mel
convention; ``OUTDIR/<stem>.wav`` gets ``frames * hop_length`` samples at the checkpoint's sample
rate, written atomically.

Files of similar length are batched together (``--batch-size``; padded, with lengths). The noise of
each file comes from its own generator, seeded from ``--seed`` and the file's name
(``Vocoder.latent_stream``), so a seeded run reproduces the same files whatever the batch size and
whichever other files are in the run.

``--mel-from NAME`` takes the mels of a TTS front end (nvidia, hifigan, espnet, coqui, coqui-ln,
speechbrain, torchaudio; see waveflow.infer.frontends) and converts each into the checkpoint's
convention first (log base, floor, dB scaling); ``--stats FILE`` undoes a mean/variance
normalisation (ESPnet's feats_stats.npz, a Kaldi cmvn.ark, ParallelWaveGAN's stats.npy/.h5). A
front end whose sample rate, hop, band or STFT differs from the checkpoint's is reported with a
``warning:`` line: no conversion repairs those.

``--onnx FILE.onnx`` runs a graph written by ``waveflow export`` on onnxruntime instead of a
checkpoint (every positional is then an input): the same seed gives the same audio as the
checkpoint's within the export's float tolerance (1e-4).

A file that cannot be used (unreadable, wrong layout or n_mels, NaN) does not stop the others: it
is listed at the end with the reason, no WAV is written for it, and the exit code is 1. Values that
look like another mel convention (log base, floor, normalisation) are reported once per file. An
output folder that cannot be written (below a file, read-only, full) stops the command at once with
exit code 4.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from waveflow.cli._inputs import Failures
    from waveflow.infer.export import OnnxVocoder
    from waveflow.infer.vocoder import Vocoder


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from waveflow.cli._inputs import add_device_arguments
    from waveflow.infer.frontends import FRONTEND_NAMES

    parser = subparsers.add_parser(
        "synthesize",
        help="turn mel spectrogram files into WAV files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s (CKPT | --onnx FILE.onnx) INPUT... -o OUTDIR [options]",
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        metavar="CKPT",
        help="waveflow or NVIDIA WaveGlow checkpoint (none with --onnx)",
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="mel files (.npy/.pt/.npz), folders or globs"
    )
    parser.add_argument("-o", "--output-dir", type=Path, required=True, help="folder for the WAV files")
    parser.add_argument("--filelist", type=Path, help="file with one mel path per line")
    add_synthesis_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=1, help="mels per forward pass (default 1)")
    parser.add_argument(
        "--time-first", action="store_true", help="mel files are (frames, n_mels) instead of (n_mels, frames)"
    )
    parser.add_argument(
        "--mel-from",
        choices=FRONTEND_NAMES,
        help="the TTS front end that made the mels: convert them into the checkpoint's convention",
    )
    parser.add_argument(
        "--stats",
        type=Path,
        metavar="FILE",
        help="mean/variance statistics the mels were normalised with (feats_stats.npz, cmvn.ark, stats.npy/.h5)",
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        metavar="FILE.onnx",
        help="run this exported graph (waveflow export) on onnxruntime instead of a checkpoint",
    )
    add_device_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def set_frontend(vocoder: Vocoder | OnnxVocoder, mel_from: str | None, stats: Path | None) -> None:
    """``--mel-from``/``--stats``: convert every mel from a TTS front end.

    What no conversion repairs (rate, hop, band, STFT) is printed as ``warning:`` lines, also under
    ``-q``; the conversion itself and its bounded losses as notes.
    """
    import warnings

    from waveflow.cli import CLIError
    from waveflow.cli._inputs import notice
    from waveflow.infer.frontends import FrontendMismatchWarning

    if mel_from is None:
        if stats is not None:
            raise CLIError("--stats needs --mel-from (the TTS front end whose mels were normalised)")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FrontendMismatchWarning)  # printed below, one line each
        vocoder.set_frontend(mel_from, stats=stats)
    adapter = vocoder.mel_adapter
    assert adapter is not None
    for message in adapter.mismatches:
        print(f"warning: --mel-from {mel_from}: {message}", file=sys.stderr)
    notice(f"--mel-from {mel_from}: {adapter.describe()}")
    for message in adapter.caveats:
        notice(f"--mel-from {mel_from}: {message}")


def load_onnx(args: argparse.Namespace) -> OnnxVocoder:
    """The ``--onnx`` graph; the options that choose the torch computation do not apply to it."""
    from waveflow.cli import CLIError
    from waveflow.infer.export import OnnxVocoder

    given = [
        flag
        for flag, value, default in (
            ("--precision", args.precision, "fp32"),
            ("--engine", args.engine, "auto"),
        )
        if value != default
    ]
    if args.device not in ("auto", "cpu"):
        given.append("--device")
    if given:
        raise CLIError(f"--onnx runs on onnxruntime's CPU provider in fp32: drop {', '.join(given)}")
    return OnnxVocoder(args.onnx)


def add_synthesis_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sigma``, ``--denoiser-strength`` and ``--seed`` (shared with resynthesize and evaluate)."""
    parser.add_argument("--sigma", type=float, default=0.6, help="std of the latent noise (default 0.6)")
    parser.add_argument(
        "--denoiser-strength",
        type=float,
        default=0.0,
        help="subtract this multiple of the model's bias spectrum (NVIDIA's denoiser; default 0 = off)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed for the noise: same seed, same audio (default: random)"
    )


def check_synthesis_arguments(args: argparse.Namespace) -> None:
    from waveflow.cli import CLIError

    if not args.sigma >= 0:
        raise CLIError(f"--sigma must be >= 0, got {args.sigma}")
    if not args.denoiser_strength >= 0:
        raise CLIError(f"--denoiser-strength must be >= 0, got {args.denoiser_strength}")


def run_seed(seed: int | None) -> int:
    """The run's base seed: the given one, or a fresh random one."""
    import secrets

    return secrets.randbits(63) if seed is None else seed


def synthesize_mels(
    vocoder: Vocoder | OnnxVocoder,
    items: list[tuple[Path, np.ndarray]],
    out_dir: Path,
    *,
    sigma: float,
    denoiser_strength: float,
    seed: int,
    batch_size: int,
    failures: Failures,
    desc: str = "synthesize",
) -> tuple[int, float, float]:
    """Vocode ``(path, mel (n_mels, frames))`` pairs into ``out_dir/<stem>.wav``.

    Returns ``(files written, audio seconds, compute seconds)``. Per-file errors go to ``failures``.
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    from waveflow.audio.io import write_wav
    from waveflow.cli._inputs import file_seed, note_clipped, notice, progress_disabled, writing

    for path, mel in items:
        for message in vocoder.mel_warnings(mel):  # as given: before any --mel-from conversion
            notice(f"{path}: {message}")

    # Similar lengths side by side keep the padding in each batch small.
    order = sorted(range(len(items)), key=lambda i: items[i][1].shape[1])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    hop, n_group = vocoder.hop_length, vocoder.n_group
    written, audio_seconds, compute_seconds = 0, 0.0, 0.0

    def vocode(batch: list[int]) -> list[tuple[int, np.ndarray]]:
        """Synthesize files ``batch`` (indices into ``items``) -> ``(index, audio (T,) float32)``."""
        frames = [items[i][1].shape[1] for i in batch]
        max_frames = max(frames)
        mel = torch.zeros(len(batch), vocoder.n_mels, max_frames)  # (B, n_mels, frames), zero-padded
        # (B, n_group, frames * hop / n_group); each item reads its own noise, past its length unused
        z = torch.zeros(len(batch), n_group, max_frames * hop // n_group, device=vocoder.device)
        for row, i in enumerate(batch):
            mel[row, :, : frames[row]] = torch.from_numpy(items[i][1])
            generator = torch.Generator().manual_seed(file_seed(seed, items[i][0].name))
            num_groups = frames[row] * hop // n_group
            z[row, :, :num_groups] = vocoder.latent_stream(sigma, generator).read(num_groups)[0]
        audio, lengths = vocoder(mel, torch.tensor(frames), sigma=sigma, denoise=denoiser_strength, z=z)
        audio = audio.to("cpu", torch.float32).numpy()  # (B, T); also waits for an asynchronous GPU
        return [(i, audio[row, : int(lengths[row])]) for row, i in enumerate(batch)]

    # The vocoder would warn once per batch; the notes above are per file.
    check_mel, vocoder.check_mel = vocoder.check_mel, False
    bar = tqdm(total=len(items), desc=desc, unit="file", file=sys.stderr, disable=progress_disabled())
    try:
        for batch in batches:
            start = time.perf_counter()
            try:
                results = vocode(batch)
            except ValueError as exc:
                if len(batch) == 1:
                    failures.add(items[batch[0]][0], exc)
                    results = []
                else:
                    # Find the culprit: run the batch's files one by one.
                    results = []
                    for i in batch:
                        try:
                            results.extend(vocode([i]))
                        except ValueError as single_exc:
                            failures.add(items[i][0], single_exc)
            compute_seconds += time.perf_counter() - start
            for i, samples in results:
                if not np.isfinite(samples).all():
                    failures.add(items[i][0], "the model produced NaN/Inf audio (try --precision fp32)")
                    continue
                target = out_dir / f"{items[i][0].stem}.wav"
                with writing(target):  # a failed write stops the run: the next would fail too
                    note_clipped(target, write_wav(target, samples, vocoder.sample_rate), samples.shape[0])
                written += 1
                audio_seconds += samples.shape[0] / vocoder.sample_rate
            bar.update(len(batch))
            if compute_seconds > 0:
                bar.set_postfix_str(f"{audio_seconds / compute_seconds:.1f}x real time")
    finally:
        bar.close()
        vocoder.check_mel = check_mel
    return written, audio_seconds, compute_seconds


def report_speed(written: int, audio_seconds: float, compute_seconds: float, out_dir: Path) -> None:
    from waveflow.cli._inputs import is_quiet

    if written == 0 or is_quiet():
        return
    speed = f", {audio_seconds / compute_seconds:.1f}x real time" if compute_seconds > 0 else ""
    print(
        f"wrote {written} file(s) to {out_dir}: {audio_seconds:.1f} s of audio in {compute_seconds:.1f} s{speed}",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    from waveflow.cli import CLIError
    from waveflow.cli._inputs import (
        MEL_EXTENSIONS,
        Failures,
        check_output_dir,
        collect_inputs,
        load_mel_file,
        load_vocoder,
        make_output_dir,
        resolve_device,
    )

    check_synthesis_arguments(args)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    inputs = list(args.inputs)
    if args.onnx is not None:
        inputs = ([str(args.checkpoint)] if args.checkpoint is not None else []) + inputs
    elif args.checkpoint is None:
        raise CLIError("missing CKPT: name a checkpoint, or an exported graph with --onnx FILE.onnx")
    if args.stats is not None and args.mel_from is None:
        raise CLIError("--stats needs --mel-from (the TTS front end whose mels were normalised)")
    files = collect_inputs(inputs, args.filelist, MEL_EXTENSIONS, what="mel input(s)")
    check_output_dir(args.output_dir)  # before the model is loaded
    if args.onnx is not None:
        vocoder = load_onnx(args)
    else:
        vocoder = load_vocoder(
            args.checkpoint, device=resolve_device(args.device), precision=args.precision, engine=args.engine
        )
    set_frontend(vocoder, args.mel_from, args.stats)
    out_dir = make_output_dir(args.output_dir)

    failures = Failures()
    items = []
    for path in files:
        try:
            items.append((path, load_mel_file(path, vocoder.n_mels, time_first=args.time_first)))
        except ValueError as exc:
            failures.add(path, exc)
    written, audio_seconds, compute_seconds = synthesize_mels(
        vocoder,
        items,
        out_dir,
        sigma=args.sigma,
        denoiser_strength=args.denoiser_strength,
        seed=run_seed(args.seed),
        batch_size=args.batch_size,
        failures=failures,
    )
    report_speed(written, audio_seconds, compute_seconds, out_dir)
    return failures.report("synthesize", len(files))
