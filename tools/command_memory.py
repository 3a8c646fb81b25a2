"""Peak memory of the file commands on a long recording: is memory bounded outside synthesis too?

Writes a ``--minutes`` long recording (real speech clips from ``--audio-dir`` repeated, or a
speech-like synthetic signal), a randomly initialised checkpoint of ``--preset`` (the weights do
not change the memory or the work; ``waveglow_ljspeech`` is NVIDIA's architecture) and runs each
command in its own process, reading that process's peak resident set size from ``os.wait4``::

    python tools/command_memory.py --minutes 10 --preset waveglow_tiny --out tools/results/command_memory_tiny_10min.json
    python tools/command_memory.py --minutes 1 --preset waveglow_ljspeech --commands score encode

The tool itself imports neither torch nor waveflow (a child's ``ru_maxrss`` starts at its parent's
at fork time); the checkpoint is written by a child process. Prints and writes one JSON report;
exit status 1 when a command fails or exceeds ``--limit-mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

COMMANDS = ("score", "encode", "decode", "resynthesize", "extract-mels", "evaluate")
PRESETS = ("waveglow_ljspeech", "waveglow_small", "waveglow_tiny", "compact")
SAMPLE_RATE = 22050

_MAKE_CHECKPOINT = """
import sys, torch
from waveflow import presets
from waveflow.checkpoint import save_checkpoint
from waveflow.config import MelConfig
from waveflow.model import WaveGlow
torch.manual_seed(0)
config = getattr(presets, sys.argv[1])()
model = WaveGlow(config)
with torch.no_grad():  # move the zero-initialised ends away from the identity: real work, finite output
    for name, p in model.named_parameters():
        if name.endswith("end.weight") or name.endswith("end.bias"):
            p.normal_(0.0, 1e-3)
save_checkpoint(sys.argv[2], model, MelConfig(n_mels=config.n_mels, hop_length=config.hop_length))
"""


def long_recording(minutes: float, audio_dir: Path | None, seed: int) -> np.ndarray:
    """``minutes`` of audio at 22.05 kHz: real clips end to end, or a speech-like synthetic signal."""
    total = int(minutes * 60 * SAMPLE_RATE)
    if audio_dir is not None:
        clips = []
        for path in sorted(audio_dir.rglob("*.wav")):
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            if rate == SAMPLE_RATE:
                clips.append(data.mean(axis=1))
            if sum(len(c) for c in clips) >= total:
                break
        if not clips:
            raise SystemExit(f"no 22050 Hz .wav files under {audio_dir}")
        audio = np.concatenate(clips)
        return np.resize(audio, total).astype(np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(total) / SAMPLE_RATE
    f0 = 120.0 + 30.0 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    audio = 0.05 * envelope * voiced + 0.003 * rng.standard_normal(total)
    return audio.astype(np.float32)


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd``; its exit status, wall seconds and peak RSS (MiB, from ``wait4``)."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    peak_kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return {
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def command_lines(name: str, waveflow: list[str], ckpt: Path, wav: Path, work: Path) -> list[str]:
    if name == "score":
        return [*waveflow, "score", str(ckpt), str(wav)]
    if name == "encode":
        return [*waveflow, "encode", str(ckpt), str(wav), str(work / "long.npz")]
    if name == "decode":
        return [*waveflow, "decode", str(ckpt), str(work / "long.npz"), str(work / "decoded.wav")]
    if name == "resynthesize":
        return [*waveflow, "resynthesize", str(ckpt), str(wav), str(work / "resynth.wav")]
    if name == "extract-mels":
        return [*waveflow, "extract-mels", "--checkpoint", str(ckpt), str(wav), "-o", str(work / "mels")]
    if name == "evaluate":
        return [
            *waveflow, "evaluate", str(ckpt), str(wav), "--synthesize",
            "--generated-dir", str(work / "generated"), "-o", str(work / "eval"),
        ]  # fmt: skip
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the recording (default 10)")
    parser.add_argument("--preset", choices=PRESETS, default="waveglow_tiny")
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--audio-dir", type=Path, help="build the recording from the .wav files here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each command (default 2)")
    parser.add_argument(
        "--limit-mb", type=float, default=2048.0, help="fail above this peak RSS (default 2048)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    if "decode" in args.commands and "encode" not in args.commands:
        args.commands.insert(args.commands.index("decode"), "encode")  # decode reads encode's output

    work = Path(tempfile.mkdtemp(prefix="command_memory_"))
    try:
        wav = work / "long.wav"
        sf.write(wav, long_recording(args.minutes, args.audio_dir, args.seed), SAMPLE_RATE, subtype="PCM_16")
        ckpt = work / "model.pt"
        subprocess.run([sys.executable, "-c", _MAKE_CHECKPOINT, args.preset, str(ckpt)], check=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
        waveflow = [sys.executable, "-m", "waveflow"]
        results = {}
        for name in args.commands:
            log = work / f"{name}.log"
            result = run_measured(command_lines(name, waveflow, ckpt, wav, work), env, log)
            if result["exit_code"] != 0:
                result["log_tail"] = log.read_text(errors="replace")[-2000:]
            result["within_limit"] = result["peak_rss_mb"] <= args.limit_mb
            results[name] = result
            print(f"{name}: {result}", file=sys.stderr)
        report = {
            "preset": args.preset,
            "minutes": args.minutes,
            "audio": str(args.audio_dir) if args.audio_dir else "synthetic",
            "threads": args.threads,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "limit_mb": args.limit_mb,
            "commands": results,
            "all_within_limit": all(r["within_limit"] and r["exit_code"] == 0 for r in results.values()),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if report["all_within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
