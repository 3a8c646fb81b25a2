"""Peak memory of long-form synthesis: does the chunked path keep memory bounded?

Synthesizes ``--minutes`` of audio from a constant-ish log-mel with a randomly initialised model of
``--preset`` (the weights do not change the memory or the work) and prints one JSON object::

    python tools/stream_memory.py --minutes 10 --preset waveglow_ljspeech
    {"preset": ..., "path": "forward", "seconds_of_audio": 600.0, "peak_rss_mb": ..., "within_limit": true, ...}

``--path forward`` calls ``vocoder(mel)`` once on the whole mel (automatic chunking, the audio is
returned as one tensor); ``--path stream`` feeds ``--chunk-frames`` frames at a time to
``vocoder.stream`` and drops each audio chunk after counting it. Peak RSS is the process's high-water
mark (``VmHWM`` on Linux), so it includes the interpreter, torch and the model. Exit status 1
when it exceeds ``--limit-mb``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
from bench_report import status_mb

from waveflow import Vocoder, presets
from waveflow.config import MelConfig
from waveflow.model import WaveGlow

MODEL_PRESETS = ("waveglow_ljspeech", "waveglow_paper", "waveglow_small", "waveglow_fast", "waveglow_tiny")


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB.

    Linux: ``VmHWM`` of this address space. ``ru_maxrss`` is no substitute there: a process started
    from a large parent inherits the parent's value at fork time, through exec. Elsewhere
    ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        return status_mb("VmHWM")
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio to synthesize (default 10)")
    parser.add_argument("--preset", choices=MODEL_PRESETS, default="waveglow_ljspeech")
    parser.add_argument("--path", choices=("forward", "stream"), default="forward")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        help="frames per window (forward) or per pushed chunk (stream)",
    )
    parser.add_argument(
        "--limit-mb", type=float, default=2048.0, help="fail above this peak RSS (default 2048)"
    )
    parser.add_argument(
        "--engine", choices=("auto", "fast", "plain"), default="auto", help="Vocoder engine (default auto)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    if args.chunk_frames is not None and args.chunk_frames < 1:
        parser.error(f"--chunk-frames must be >= 1, got {args.chunk_frames}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rss_start = peak_rss_mb()
    torch.manual_seed(args.seed)
    model_config = getattr(presets, args.preset)()
    mel_config = MelConfig(n_mels=model_config.n_mels, hop_length=model_config.hop_length)
    vocoder = Vocoder(
        WaveGlow(model_config), mel_config, engine=args.engine
    )  # takes ownership: no second copy of the weights
    if args.chunk_frames is not None and args.path == "forward":
        vocoder.chunk_frames = args.chunk_frames
    vocoder.check_mel = False  # the synthetic mel is not speech
    rss_model = peak_rss_mb()

    num_frames = max(1, round(args.minutes * 60 * mel_config.sample_rate / mel_config.hop_length))
    generator = torch.Generator().manual_seed(args.seed)
    # A speech-level log-mel (around ln 0.01) with small fluctuations; (1, n_mels, frames).
    mel = -4.6 + 0.5 * torch.randn(1, model_config.n_mels, num_frames, generator=generator)

    if args.path == "forward":
        chunk_frames = vocoder._chunk_groups(vocoder.inverse_engine()) * vocoder.n_group // vocoder.hop_length
    else:
        chunk_frames = args.chunk_frames or 64
    start = time.perf_counter()
    if args.path == "forward":
        audio, _ = vocoder(mel, generator=generator)
        num_samples = audio.shape[1]
        del audio
    else:
        chunks = (mel[:, :, i : i + chunk_frames] for i in range(0, num_frames, chunk_frames))
        num_samples = sum(chunk.numel() for chunk in vocoder.stream(chunks, generator=generator))
    wall = time.perf_counter() - start

    seconds = num_samples / mel_config.sample_rate
    peak = peak_rss_mb()
    report = {
        "preset": args.preset,
        "path": args.path,
        "engine": args.engine,
        "chunk_frames": chunk_frames,
        "num_frames": num_frames,
        "num_samples": num_samples,
        "seconds_of_audio": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "real_time_factor": round(wall / seconds, 4),
        "torch_threads": torch.get_num_threads(),
        "rss_at_start_mb": round(rss_start, 1),
        "rss_after_model_mb": round(rss_model, 1),
        "peak_rss_mb": round(peak, 1),
        "limit_mb": args.limit_mb,
        "within_limit": peak <= args.limit_mb,
    }
    print(json.dumps(report))
    return 0 if report["within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
