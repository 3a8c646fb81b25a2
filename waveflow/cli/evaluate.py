"""``waveflow evaluate CKPT (--filelist F | REF...) --generated-dir DIR -o OUTDIR``: objective metrics.

For every reference recording, ``DIR/<stem>.wav`` is the vocoded version (from ``waveflow
synthesize`` on the reference's mel); with ``--synthesize`` missing ones are vocoded first,
otherwise they are listed as an error. Both are taken at the checkpoint's sample rate (resampled
with a note) and trimmed to the shorter length (the vocoder returns ``frames * hop_length``
samples, a little more than the recording).

Metrics per file and system (see :mod:`waveflow.eval.metrics`): wideband PESQ (at 16 kHz), STOI,
multi-resolution STFT distance (spectral convergence + log-magnitude L1 at 1024/120/600,
2048/240/1200, 512/50/240), natural-log mel L1 (Tacotron2 convention, 0-8 kHz), F0 RMSE in cents
on frames voiced in both (pYIN) and the voicing decision error rate. Systems: ``waveflow`` and,
unless ``--no-griffin-lim``, a Griffin-Lim baseline inverted from the same mels (the
checkpoint's front end applied to the reference). The model's NLL of each reference (nats and
bits per sample) is added to every row of that file.

Long recordings stay within bounded memory: the NLL is computed in windows with exact context,
pairs longer than 30 s are scored in 30 s segments (each metric the length-weighted mean over
them; shorter pairs, every usual utterance, are scored whole) and Griffin-Lim inverts mels longer
than 2560 frames piece by piece.

Writes ``OUTDIR/metrics.csv`` (one row per file and system) and ``OUTDIR/summary.json`` (means
over finite values, their counts, the settings, and the samples clipped in each file that
``--synthesize`` wrote), both atomically. With ``--plots``, also ``OUTDIR/plots/<stem>.png`` per
file: the log-mels (the checkpoint's front end) of the reference, the waveflow audio and the
Griffin-Lim audio on one colour scale, and waveflow minus reference on a diverging scale centred
on 0 (needs matplotlib: ``pip install 'waveflow[plot]'``).

F0 and the Griffin-Lim baseline need librosa, PESQ and STOI need pesq and pystoi: ``pip install
'waveflow[eval]'`` (without pesq or pystoi those columns are NaN, with a note).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from waveflow.cli._inputs import add_device_arguments
    from waveflow.cli.synthesize import add_synthesis_arguments

    parser = subparsers.add_parser(
        "evaluate",
        help="objective metrics (PESQ, STOI, MR-STFT, mel L1, F0) of vocoded audio vs references",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="the checkpoint that produced the generated audio")
    parser.add_argument(
        "references", nargs="*", metavar="REF", help="reference audio files, folders or globs"
    )
    parser.add_argument("--filelist", type=Path, help="file with one reference audio path per line")
    parser.add_argument(
        "--generated-dir", type=Path, required=True, help="folder with <stem>.wav per reference"
    )
    parser.add_argument(
        "-o", "--output-dir", type=Path, required=True, help="folder for metrics.csv and summary.json"
    )
    parser.add_argument(
        "--griffin-lim",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score a Griffin-Lim baseline on the same mels (default: on)",
    )
    parser.add_argument(
        "--griffin-lim-iters", type=int, default=32, help="Griffin-Lim iterations (default 32)"
    )
    parser.add_argument(
        "--synthesize",
        action="store_true",
        help="vocode references whose <stem>.wav is missing into --generated-dir",
    )
    parser.add_argument(
        "--plots",
        action="store_true",
        help="also write OUTDIR/plots/<stem>.png: the reference, waveflow and Griffin-Lim mels on one "
        "colour scale, and waveflow - reference",
    )
    add_synthesis_arguments(parser)
    add_device_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import warnings

    from waveflow.cli import CLIError
    from waveflow.cli._inputs import (
        AUDIO_EXTENSIONS,
        Failures,
        check_output_dir,
        collect_inputs,
        load_vocoder,
        make_output_dir,
        mel_of,
        notice,
        progress_disabled,
        record_clipping,
        resolve_device,
        writing,
    )
    from waveflow.cli.resynthesize import load_at_rate
    from waveflow.cli.synthesize import check_synthesis_arguments, run_seed, synthesize_mels
    from waveflow.eval import metrics, plots
    from waveflow.eval import run as evaluation

    check_synthesis_arguments(args)
    if args.griffin_lim_iters < 1:
        raise CLIError(f"--griffin-lim-iters must be >= 1, got {args.griffin_lim_iters}")
    try:
        import librosa  # noqa: F401  (F0 and Griffin-Lim)
    except ImportError:
        raise CLIError(
            "evaluate needs librosa (F0 metrics, Griffin-Lim baseline): pip install 'waveflow[eval]'"
        ) from None
    if args.plots:
        plots.require_matplotlib()  # before the model is loaded
    references = collect_inputs(args.references, args.filelist, AUDIO_EXTENSIONS, what="reference audio")
    generated_dir = Path(args.generated_dir)
    missing = [r for r in references if not evaluation.generated_path(generated_dir, r).is_file()]
    if missing and not args.synthesize:
        names = ", ".join(f"{r.stem}.wav" for r in missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise CLIError(
            f"{len(missing)} of {len(references)} generated file(s) missing in {generated_dir}: {names} "
            f"(run `waveflow synthesize` first, or pass --synthesize)"
        )
    for folder in [args.output_dir] + ([generated_dir] if missing else []):
        check_output_dir(folder)  # before the model is loaded
    vocoder = load_vocoder(
        args.checkpoint, device=resolve_device(args.device), precision=args.precision, engine=args.engine
    )
    out_dir = make_output_dir(args.output_dir)
    plots_dir = make_output_dir(out_dir / "plots") if args.plots else None
    failures = Failures()
    clipped: dict[str, int] = {}

    if missing:
        make_output_dir(generated_dir)
        items = []
        for path in missing:
            try:
                items.append((path, mel_of(vocoder, load_at_rate(path, vocoder.sample_rate))))
            except ValueError as exc:
                failures.add(path, exc)
        with record_clipping() as clipped:
            synthesize_mels(
                vocoder,
                items,
                generated_dir,
                sigma=args.sigma,
                denoiser_strength=args.denoiser_strength,
                seed=run_seed(args.seed),
                batch_size=1,
                failures=failures,
                desc="synthesize missing",
            )

    failed = {p for p, _ in failures.items}
    settings = {"griffin_lim": args.griffin_lim, "griffin_lim_iters": args.griffin_lim_iters}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metrics.MetricUnavailableWarning)
        rows, errors = evaluation.evaluate_files(
            vocoder,
            [r for r in references if r not in failed],
            generated_dir,
            plots_dir=plots_dir,
            notice=notice,
            disable_progress=progress_disabled(),
            **settings,
        )
    for message in dict.fromkeys(str(w.message) for w in caught):
        notice(message)
    for path, reason in errors:
        failures.add(path, reason)
    summary = evaluation.summarize(
        rows,
        vocoder,
        checkpoint=args.checkpoint,
        generated_dir=generated_dir,
        num_references=len(references),
        failed=failures.items,
        clipped_samples=clipped,
        plots_dir=plots_dir,
        synthesized_missing=len(missing),
        **settings,
    )
    with writing(out_dir / "metrics.csv") as target:
        evaluation.write_metrics_csv(target, rows)
    with writing(out_dir / "summary.json") as target:
        evaluation.write_summary(target, summary)

    systems, nll = summary["systems"], summary["reference_nll_per_sample"]
    width = max(len(name) for name in metrics.METRIC_NAMES) + 2
    print(f"{'metric (mean)':<{width}}" + "".join(f"{system:>14}" for system in systems))
    for name in metrics.METRIC_NAMES:
        print(f"{name:<{width}}" + "".join(f"{systems[s][name]['mean']:>14.4f}" for s in systems))
    print(f"reference NLL: {nll['nats']['mean']:.4f} nats/sample ({nll['bits']['mean']:.4f} bits/sample)")
    plotted = f" (plots in {plots_dir})" if plots_dir is not None else ""
    print(f"wrote {out_dir / 'metrics.csv'} and {out_dir / 'summary.json'}{plotted}", file=sys.stderr)
    return failures.report("evaluate", len(references))
