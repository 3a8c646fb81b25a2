"""``waveflow plot-log RUN_DIR [-o OUT.png] [--x step|cpu-minutes]``: training curves as a PNG.

Reads ``RUN_DIR/train_log.jsonl`` (or the log file named directly) as ``waveflow train`` writes it
and draws, on one x axis, the training NLL (nats per audio sample, averaged over each logging
window) with the validation NLL, then the auxiliary loss, the learning rate and the gradient norm
where the log holds them. A resumed run appended to the same log: the last record of each step
counts. ``--x cpu-minutes`` puts the CPU time the run had used on the x axis (logged as ``cpu_s``),
to compare runs at an equal compute budget.

Writes ``RUN_DIR/train_log.png`` unless ``-o`` says otherwise. Needs matplotlib
(``pip install 'waveflow[plot]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

X_CHOICES = ("step", "cpu-minutes")  # = waveflow.eval.plots.X_AXES, without importing it to build the parser


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plot-log",
        help="training and validation curves of a run (train_log.jsonl) as a PNG",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="training run folder, or its train_log.jsonl"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="PNG to write (default: train_log.png beside the log)"
    )
    parser.add_argument(
        "--x", choices=X_CHOICES, default="step", help="x axis: training steps or CPU-minutes (default step)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow.cli._inputs import check_output_file, make_output_file, writing
    from waveflow.eval import plots

    plots.require_matplotlib()  # before anything else: one line saying how to install it
    log = plots.read_train_log(args.run_dir)
    output = args.output if args.output is not None else log.path.parent / "train_log.png"
    check_output_file(output)
    figure = plots.training_curves_figure(log, x=args.x)
    with writing(make_output_file(output)):
        plots.save_png(figure, output)
    print(f"wrote {output} ({len(log.train)} training and {len(log.val)} validation records from {log.path})")
    return 0
