"""``waveflow train --config X.yaml --run-dir DIR [--resume] [--device D] [key=value ...]``.

Resolves the config (YAML file, then dotted overrides such as ``train.max_steps=1000`` or
``model.wavenet.n_layers=4``), writes it to ``DIR/config.yaml`` and trains, with checkpoints in
``DIR/checkpoints`` and metrics in ``DIR/train_log.jsonl`` (and ``DIR/tensorboard`` when
tensorboard is installed). File lists, audio files and the config are checked before anything is
written.

A directory that already holds a run is refused unless ``--resume`` is given; ``--resume`` continues
from the newest checkpoint there (model, optimizer, step, data position and random state; on the
CPU the result is bit for bit that of an uninterrupted run) or starts the run if it has none, so
the same command can be repeated after a crash or a job time limit. With ``--resume`` the config defaults to
``DIR/config.yaml``. Ctrl-C or SIGTERM stop after the current step with a checkpoint; the exit code
is then 130 or 143 (128 + the signal's number).

A full disk (or any write that fails in DIR) stops the run with one line naming the file and exit
code 4; the checkpoints written before are intact and ``--resume`` continues from the last of them.
``--resume`` never starts over in a directory whose checkpoints are all unreadable: it names them
and exits with code 3 (move them away to start again there, or use another --run-dir); unreadable
ones among readable ones are skipped and named. Too many non-finite steps, or non-finite weights
after an optimizer step, stop the run with exit code 1 (the weights on disk are the last good ones).

Several GPUs or machines: launch the same command through torchrun (``train.batch_size`` is the
global batch)::

    torchrun --standalone --nproc_per_node=4 -m waveflow train --config X.yaml --run-dir DIR
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        --rdzv_id=RUN -m waveflow train --config X.yaml --run-dir DIR   # on every machine
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a vocoder from a YAML config into a run directory (resumable, torchrun-ready)",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML experiment config (sections model, mel, data, train); with --resume, default DIR/config.yaml",
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory (created if needed)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in the run directory"
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (same as train.device=...)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides by dotted key, e.g. train.max_steps=1000 data.segment_length=16000",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow.cli import CLIError
    from waveflow.train import TrainingDivergedError, load_config, train

    config_path = args.config
    if config_path is None:
        saved = args.run_dir / "config.yaml"
        if not (args.resume and saved.is_file()):
            raise CLIError(
                f"--config is required (with --resume it defaults to {saved}, which does not exist)"
            )
        config_path = saved
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    config = load_config(config_path, overrides)
    try:
        result = train(config, args.run_dir, resume=args.resume)
    except TrainingDivergedError as exc:
        print(f"waveflow train: {exc}", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        return 128 + (result.signal or 0)  # the shell convention for "terminated by signal N"
    return 0
