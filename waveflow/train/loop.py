"""The training loop: :func:`train`, one function to read top to bottom.

Launch it through the CLI (``waveflow train --help``)::

    # one process (a GPU if there is one, else the CPU)
    waveflow train --config ljspeech.yaml --run-dir runs/ljs
    # continue after a crash, Ctrl-C or a time limit: same command plus --resume
    waveflow train --config ljspeech.yaml --run-dir runs/ljs --resume
    # 4 GPUs on one machine (train.batch_size is the global batch, split over the processes)
    torchrun --standalone --nproc_per_node=4 -m waveflow train --config ... --run-dir runs/ljs
    # 2 machines x 8 GPUs: run on every machine, with HOST reachable by all of them
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        --rdzv_id=ljs -m waveflow train --config ... --run-dir runs/ljs

In a multi-machine run every machine must see the same file lists and audio paths, and the run
directory must be on a shared file system (rank 0 writes it; every rank reads it to resume).

One step: draw a batch of audio crops ``(B, segment_length)``; compute their mels on the device;
run the flow (under autocast on CUDA: bf16 by default, fp16 with a ``GradScaler``); take the NLL in
float32 outside autocast; backpropagate; clip the gradient norm; step Adam. A step whose loss or
gradient norm is not finite, or whose batch holds NaN/Inf audio, is skipped on every rank (weights
and optimizer untouched) and counted; ``train.max_nonfinite_steps`` skipped steps in a row stop the
run with a checkpoint of the last good weights. After every optimizer step the parameters are
checked too: a step that leaves any of them NaN/Inf (finite loss and gradients, but a corrupt
optimizer state or an overflowing update) stops the run at once, without saving those weights.

A full disk (or any failed write in the run directory) stops the run with
:class:`~waveflow.errors.OutputError` naming the file; every checkpoint written before is intact
(atomic writes), and ``--resume`` continues from the last of them. A resume never destroys what it
resumes from: unreadable checkpoints are skipped (and named), and if none can be read the resume is
refused with :class:`~waveflow.errors.CheckpointError` before anything is written.

The learning rate is a pure function of the step (:func:`learning_rate_at`), so restoring the
step restores the schedule, and a resumed run follows the schedule of its current config.

Fine-tuning: ``train.init_from`` starts a new run from another model's weights with a fresh
optimizer at step 0, checked against the config before anything is written, and validates those
weights at step 0 (:mod:`waveflow.train.init_from`); ``data.mel_dir`` conditions the flow on given
(teacher-forced) mels instead of the audio's own (:mod:`waveflow.data.mel_dir`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from waveflow import losses
from waveflow.audio.features import MelSpectrogram
from waveflow.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from waveflow.config import ExperimentConfig, TrainConfig, flatten_settings
from waveflow.data import SegmentDataset, UtteranceDataset, read_filelist
from waveflow.data.mel_dir import MelDir, MelSegmentDataset, MelUtteranceDataset
from waveflow.devices import parse_device
from waveflow.errors import CheckpointError, OutputError
from waveflow.model import WaveGlow
from waveflow.nn.source import sine_excitation, track_f0
from waveflow.train import distributed
from waveflow.train.batches import batches_per_epoch, epoch_loader
from waveflow.train.distributed import DistributedEnv
from waveflow.train.ema import ExponentialMovingAverage
from waveflow.train.init_from import InitWeights, read_init_weights
from waveflow.train.logging import RunLogger
from waveflow.train.run_dir import RunDir, writing
from waveflow.train.state import TrainerState, capture_rng_state, parameter_sha256, restore_rng_state
from waveflow.train.yaml_config import write_config

SAMPLE_SIGMA = 0.6  # sigma of the audio samples sent to TensorBoard (NVIDIA's inference default)


class TrainingDivergedError(RuntimeError):
    """Too many consecutive non-finite steps; the message names the checkpoint of the last good weights."""


@dataclass(frozen=True)
class TrainResult:
    """How :func:`train` ended (``checkpoint`` is the last one written; ``None`` on ranks other than 0)."""

    status: Literal["completed", "interrupted"]
    step: int
    checkpoint: Path | None
    best_val_nll: float | None
    signal: int | None = None  # the signal that interrupted the run


# -- settings ------------------------------------------------------------------------------------
def learning_rate_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then constant or cosine.

    Warmup rises linearly to ``learning_rate`` over ``warmup_steps`` steps; the cosine schedule
    then decays to ``min_learning_rate`` at ``max_steps``.
    """
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_learning_rate + 0.5 * (cfg.learning_rate - cfg.min_learning_rate) * (
        1 + math.cos(math.pi * progress)
    )


def matmul_gflops(sizes: tuple[int, ...] = (512, 1024), repeats: int = 3) -> float:
    """The best fp32 ``torch.mm`` rate over square ``sizes``, GFLOP/s, with the current threads (~0.1 s)."""
    best = 0.0
    for n in sizes:
        gen = torch.Generator().manual_seed(n)  # its own generator: the run's random streams stay untouched
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / max(time.perf_counter() - start, 1e-9) / 1e9)
    return round(best, 1)


def resolve_device(name: str, env: DistributedEnv) -> torch.device:
    """``auto`` -> CUDA if available, else CPU. Under torchrun a CUDA device is ``cuda:LOCAL_RANK``."""
    device = parse_device(name, "train.device")
    if device.type == "cuda":
        if env.is_distributed:
            device = torch.device("cuda", env.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU."""
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise ValueError(
                f"train.precision={precision} needs a CUDA device; on {device} training runs in fp32"
            )
        return torch.float32
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# -- signals -------------------------------------------------------------------------------------
class _GracefulStop:
    """SIGINT/SIGTERM ask the loop to stop after the current step and save a checkpoint.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once. Handlers can only be installed from the
    main thread; elsewhere the run simply has no graceful stop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# -- the run -------------------------------------------------------------------------------------
def train(config: ExperimentConfig, run_dir: str | os.PathLike[str], *, resume: bool = False) -> TrainResult:
    """Train a WaveGlow on ``config``, writing config, logs and checkpoints to ``run_dir``.

    Inputs (config, file lists, audio files, the run directory) are checked before anything is
    written. Without ``resume`` a directory that already holds a run is refused; with ``resume``
    the newest readable checkpoint in it is continued (model, optimizer, scaler, step, data
    position, RNG states), or a new run starts if there is none; if there are checkpoints but none
    can be read, :class:`~waveflow.errors.CheckpointError` is raised and nothing is written. Under
    torchrun this runs on every rank.

    Returns how the run ended; raises :class:`TrainingDivergedError` after
    ``train.max_nonfinite_steps`` consecutive non-finite steps (having saved a checkpoint) or when
    an optimizer step leaves a parameter non-finite (saving nothing), and
    :class:`~waveflow.errors.OutputError` when a write in the run directory fails (a full disk).
    """
    config.validate()
    tcfg, dcfg = config.train, config.data
    env = DistributedEnv.from_environ()
    device = resolve_device(tcfg.device, env)
    amp_dtype = resolve_precision(tcfg.precision, device)
    if tcfg.batch_size % env.world_size != 0:
        raise ValueError(
            f"train.batch_size={tcfg.batch_size} (the global batch) is not divisible by the {env.world_size} processes"
        )
    run = RunDir(run_dir)

    # Inputs first: a bad file list or audio file fails here, before any run file exists.
    if not dcfg.training_files:
        raise ValueError("data.training_files is not set (a file list of training audio)")
    # data.mel_dir: given (teacher-forced) mels, every one checked here with its audio
    mels = MelDir.from_config(config.mel, dcfg) if dcfg.mel_dir else None
    segments = SegmentDataset if mels is None else functools.partial(MelSegmentDataset, mels=mels)
    utterances = UtteranceDataset if mels is None else functools.partial(MelUtteranceDataset, mels=mels)
    train_set = segments(
        read_filelist(dcfg.training_files),
        config.mel.sample_rate,
        dcfg.segment_length,
        seed=tcfg.seed,
        short_clips=dcfg.short_clips,
        dequantize=dcfg.dequantize,
        resample=dcfg.resample,
    )
    num_batches = batches_per_epoch(len(train_set), tcfg.batch_size)
    if num_batches == 0:
        raise ValueError(
            f"{dcfg.training_files} gives {len(train_set)} usable clip(s), fewer than train.batch_size={tcfg.batch_size}"
        )
    val_set = None
    if dcfg.validation_files:
        val_set = utterances(
            read_filelist(dcfg.validation_files),
            config.mel.sample_rate,
            max_seconds=dcfg.validation_max_seconds,
            multiple_of=config.model.n_group,
            resample=dcfg.resample,
            dequantize=dcfg.dequantize,  # the same density as in training (fixed noise per utterance)
            seed=tcfg.seed,
        )
        if len(val_set) == 0:
            raise ValueError(
                f"{dcfg.validation_files} lists no usable audio; fix it or set data.validation_files=''"
            )

    distributed.init_process_group(env, device)
    try:
        checkpoint, skipped = _checkpoint_to_resume(run, config, resume)
        # train.init_from, checked against the config before anything is written; a run resumed
        # from its own checkpoint does not read it again.
        init = read_init_weights(tcfg.init_from, config) if tcfg.init_from and checkpoint is None else None
        distributed.barrier()  # every rank has looked at the directory before rank 0 writes to it
        removed: list[Path] = []
        if env.is_main:
            with writing(run.checkpoints, "the checkpoint folder"):
                run.create()
                removed = run.remove_partial_files()
            with writing(run.config, "the run's config"):
                write_config(config, run.config)
        start_step = checkpoint.training_state["trainer"]["step"] if checkpoint is not None else 0
        logger = RunLogger(run.root, enabled=env.is_main, total_steps=tcfg.max_steps, start_step=start_step)
        with _GracefulStop() as stop, _closed_after(logger):
            if removed:
                logger.message(f"removed {len(removed)} partial file(s) left by an interrupted write")
            return _run(
                config,
                run,
                env,
                device,
                amp_dtype,
                train_set,
                val_set,
                checkpoint,
                stop,
                logger,
                skipped,
                init,
            )
    finally:
        distributed.destroy_process_group()


@contextlib.contextmanager
def _closed_after(logger: RunLogger) -> Iterator[RunLogger]:
    """Close ``logger`` after the block. When the block failed, that failure is the one reported: a
    second one from closing (the same full disk, met again while flushing) is dropped."""
    try:
        yield logger
    except BaseException:
        with contextlib.suppress(Exception):
            logger.close()
        raise
    logger.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_training_state(checkpoint: Checkpoint) -> None:
    """Refuse a training state that :func:`_restore` could not use (a file not written by waveflow)."""
    state = checkpoint.training_state
    assert state is not None
    problems = [
        key
        for key, kind in (("trainer", dict), ("optimizer", dict), ("scaler", dict), ("rng", list))
        if not isinstance(state.get(key), kind)
    ]
    if not problems and not (isinstance(state["rng"], list) and state["rng"]):
        problems.append("rng")
    batch = state.get("global_batch_size")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        problems.append("global_batch_size")
    if not problems:
        step = state["trainer"].get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            problems.append("trainer.step")
        else:
            try:
                TrainerState.from_dict(state["trainer"])
            except (TypeError, ValueError):
                problems.append("trainer")
    if problems:
        raise CheckpointError(
            f"{checkpoint.path}: its training state is incomplete or malformed ({', '.join(problems)})"
        )


def _checkpoint_to_resume(
    run: RunDir, config: ExperimentConfig, resume: bool
) -> tuple[Checkpoint | None, list[Path]]:
    """The newest readable checkpoint of ``run`` (or ``None`` for a new run), and the unreadable
    ones skipped on the way. Refuses, before anything is written, when there are checkpoints but
    none can be read: starting afresh there would overwrite and prune them."""
    if not resume:
        if run.holds_run():
            raise ValueError(
                f"{run.root} already holds a training run; pass --resume to continue it, or choose another --run-dir"
            )
        return None, []
    skipped: list[tuple[Path, str]] = []
    for path in run.resume_candidates():
        try:
            checkpoint = load_checkpoint(path)
            if checkpoint.training_state is not None:
                _check_training_state(checkpoint)
        except (ValueError, OSError) as exc:  # corrupt, truncated, unsafe, non-finite, unreadable
            skipped.append((path, _one_line(exc)))
            print(f"warning: cannot resume from {path}: {_one_line(exc)}", file=sys.stderr)
            continue
        if checkpoint.training_state is None:
            raise CheckpointError(
                f"{path} holds no training state (it is an export, not a training checkpoint)"
            )
        _check_same_vocoder(checkpoint, config)
        if skipped:
            print(
                f"warning: resuming from {path}, skipping {len(skipped)} newer checkpoint(s) that cannot be "
                f"read: {', '.join(p.name for p, _ in skipped)}. They are left in place (and never pruned); "
                "a step file is replaced when the run writes that step again.",
                file=sys.stderr,
            )
        return checkpoint, [p for p, _ in skipped]
    if skipped:
        reasons = "; ".join(f"{p.name}: {why}" for p, why in skipped)
        raise CheckpointError(
            f"cannot resume: none of the {len(skipped)} checkpoint(s) in {run.checkpoints} can be read "
            f"({reasons}). Nothing was changed. To continue, restore a readable copy of one of them; to "
            f"start this run again from step 0, move them out of {run.checkpoints} first; or start a "
            "new run in another --run-dir."
        )
    return None, []


def _config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = flatten_settings(old), flatten_settings(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _check_same_vocoder(checkpoint: Checkpoint, config: ExperimentConfig) -> None:
    changes = _config_changes(
        {"model": checkpoint.config.model.to_dict(), "mel": checkpoint.config.mel.to_dict()},
        {"model": config.model.to_dict(), "mel": config.mel.to_dict()},
    )
    if changes:
        raise ValueError(
            f"cannot resume from {checkpoint.path}: the model/mel settings differ from the checkpoint's "
            f"({'; '.join(changes)})"
        )


def _run(
    config: ExperimentConfig,
    run: RunDir,
    env: DistributedEnv,
    device: torch.device,
    amp_dtype: torch.dtype,
    train_set: SegmentDataset,
    val_set: UtteranceDataset | None,
    checkpoint: Checkpoint | None,
    stop: _GracefulStop,
    logger: RunLogger,
    skipped: list[Path] | None = None,
    init: InitWeights | None = None,
) -> TrainResult:
    tcfg, dcfg = config.train, config.data

    # -- model, mel front end, optimizer; the saved state when resuming -------------------------
    torch.manual_seed(tcfg.seed)  # the same initial weights on every rank
    random.seed(tcfg.seed)
    np.random.seed(tcfg.seed)  # noqa: NPY002
    model = WaveGlow.from_config(config.model).to(device)
    if init is not None:  # train.init_from: the source's weights (before the average copies them)
        init.load_into(model)
    mel_fn = MelSpectrogram.from_config(config.mel).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=tcfg.learning_rate, betas=tcfg.adam_betas, weight_decay=tcfg.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = ExponentialMovingAverage(model, tcfg.ema_decay) if tcfg.ema_decay is not None else None
    state = TrainerState()
    if checkpoint is not None:
        state = _restore(checkpoint, model, optimizer, scaler, ema, config, env, logger)
        if tcfg.init_from:
            logger.message(f"train.init_from={tcfg.init_from} is not applied again: the run continues")
    # What the run started from (kept in every checkpoint's metadata); None for a random start.
    init_from = (
        init.record() if init is not None else (checkpoint.metadata.get("init_from") if checkpoint else None)
    )
    ddp_model = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if env.is_distributed
        else model
    )
    num_params = sum(p.numel() for p in model.parameters())
    precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
    logger.record(
        "start",
        step=state.step,
        resumed_from=str(checkpoint.path) if checkpoint is not None else None,
        init_from=init_from,
        world_size=env.world_size,
        device=str(device),
        precision=precision,
        num_parameters=num_params,
        # Machines of one kind differ by up to 2.5x: the CPU's fp32 matmul rate at the run's thread
        # count, measured now, goes beside every CPU-time budget and curve of the run.
        matmul_gflops=matmul_gflops() if device.type == "cpu" else None,
        threads=torch.get_num_threads(),
    )
    logger.message(
        f"training {num_params:,} parameters on {device} ({precision}, {env.world_size} process(es)); "
        f"{len(train_set)} clips, {batches_per_epoch(len(train_set), tcfg.batch_size)} batches per epoch"
        + (
            f" ({train_set.num_skipped} clips shorter than data.segment_length skipped)"
            if train_set.num_skipped
            else ""
        )
    )
    if val_set is None:
        logger.message("no data.validation_files: validation NLL and best.pt are off")
    if init is not None:
        logger.message(init.describe())
        for note in init.notes:
            logger.message(f"note: {note}")
        if val_set is not None:  # the starting point of the fine-tuning, as the best so far
            _validate(model, mel_fn, val_set, config, env, device, amp_dtype, state, logger)

    # -- the loop ------------------------------------------------------------------------------------
    saver = _Checkpointer(
        run, model, config, optimizer, scaler, env, logger, ema, keep=set(skipped or ()), init_from=init_from
    )
    last_saved, last_checkpoint = (state.step, checkpoint.path) if checkpoint is not None else (-1, None)
    window = _Window()
    stopping = False  # set on every rank at once (see the flags below)
    weights_broken = False  # the parameters are not finite: nothing may save them
    model.train()
    batches = _batches(train_set, env, state, config, pin_memory=device.type == "cuda")
    cpu_clock = time.process_time()
    try:
        for batch in itertools.islice(batches, max(0, tcfg.max_steps - state.step)):
            audio, given_mel = _on_device(batch, device)  # (B / world_size, segment_length), mels or None
            # One collective answers "has any rank been signalled to stop / drawn NaN audio?", so that
            # every rank takes the same branch (a rank skipping a step alone would deadlock DDP).
            flags = torch.stack(
                [
                    torch.tensor(float(stop.signum is not None), device=device),
                    (~torch.isfinite(audio)).any().float(),
                ]
            )
            stopping, bad_audio = (bool(v) for v in distributed.all_reduce_(flags, "max").tolist())
            if stopping:
                break
            lr = learning_rate_at(state.step, tcfg)
            for group in optimizer.param_groups:
                group["lr"] = lr

            if bad_audio:
                good = False
                state.nonfinite_batches += 1
                why = "NaN/Inf audio in the batch"
            else:
                loss, nvidia_loss, grad_norm, aux, f0_loss = _optimize(
                    ddp_model,
                    model,
                    mel_fn,
                    optimizer,
                    scaler,
                    audio,
                    tcfg,
                    device,
                    amp_dtype,
                    state.step,
                    given_mel,
                )
                good = math.isfinite(loss) and math.isfinite(grad_norm)
                if good:
                    broken = _nonfinite_parameters(model)
                    if bool(distributed.all_reduce_(torch.tensor(float(bool(broken)), device=device), "max")):
                        weights_broken = True
                        logger.record("end", step=state.step + 1, status="diverged")
                        raise TrainingDivergedError(
                            _broken_weights_message(state.step + 1, broken, last_checkpoint, tcfg)
                        )
                if good and ema is not None:
                    ema.update(model)
                if not good:
                    state.nonfinite_steps += 1
                why = f"loss {loss}, gradient norm {grad_norm}"
            state.step += 1
            state.batch_in_epoch += 1
            now = time.process_time()
            state.cpu_seconds += now - cpu_clock
            cpu_clock = now
            if good:
                state.consecutive_nonfinite = 0
                window.add(loss, nvidia_loss, grad_norm, aux, f0_loss)
            else:
                state.consecutive_nonfinite += 1
                window.skipped += 1
                logger.message(f"step {state.step}: skipped ({why}); {state.consecutive_nonfinite} in a row")

            if state.step % tcfg.log_every == 0:
                record = window.summary(tcfg.batch_size * dcfg.segment_length)
                logger.record(
                    "train",
                    step=state.step,
                    epoch=state.epoch,
                    lr=lr,
                    skipped_total=state.nonfinite_steps,
                    bad_batches_total=state.nonfinite_batches,
                    cpu_s=state.cpu_seconds,
                    **record,
                )
                window = _Window()
                if record["loss"] is not None:
                    logger.progress(
                        state.step, loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.3g}"
                    )
            logger.progress(state.step)

            budget_spent = False
            if tcfg.max_cpu_minutes is not None:  # every rank stops at the same step
                spent = torch.tensor(float(state.cpu_seconds >= 60 * tcfg.max_cpu_minutes), device=device)
                budget_spent = bool(distributed.all_reduce_(spent, "max").item())
            done = state.step == tcfg.max_steps or budget_spent
            improved = False
            if val_set is not None and (state.step % tcfg.validate_every == 0 or done):
                with ema.applied(model) if ema is not None else contextlib.nullcontext():
                    improved = _validate(
                        model, mel_fn, val_set, config, env, device, amp_dtype, state, logger
                    )
            diverged = state.consecutive_nonfinite >= tcfg.max_nonfinite_steps
            periodic = state.step % tcfg.checkpoint_every == 0 or done or diverged
            if periodic or (improved and tcfg.keep_best):
                path = saver.save(
                    state,
                    reason="diverged" if diverged else "periodic" if periodic else "best",
                    step_file=periodic,
                    best=improved and tcfg.keep_best,
                )
                if periodic:
                    last_saved, last_checkpoint = state.step, path
            if budget_spent:
                logger.message(
                    f"step {state.step}: train.max_cpu_minutes={tcfg.max_cpu_minutes} reached "
                    f"({state.cpu_seconds / 60:.1f} CPU-minutes)"
                )
                break
            if diverged:
                logger.record("end", step=state.step, status="diverged")
                raise TrainingDivergedError(
                    f"training stopped at step {state.step}: {state.consecutive_nonfinite} steps in a row had a "
                    f"non-finite loss/gradient or NaN/Inf audio (train.max_nonfinite_steps={tcfg.max_nonfinite_steps}). "
                    f"The last good weights are in {last_checkpoint}. Try a lower train.learning_rate, "
                    f"train.grad_clip_norm, train.precision=fp32, or check the audio (silent or NaN clips)."
                )
    except Exception as exc:
        # An unexpected failure (a data loader worker killed, a full disk, out of memory) must not
        # cost the run: the weights and counters describe the last completed step, so save them
        # (unless they are the non-finite weights the guard stopped on; on a full disk this fails
        # too, harmlessly: writes are atomic). In a distributed run the other ranks may not reach
        # the save collectives, so there the periodic checkpoints are what a --resume continues from.
        if not env.is_distributed and last_saved != state.step and not weights_broken:
            with contextlib.suppress(Exception):
                last_checkpoint = saver.save(state, reason="crash", step_file=True, best=False)
        if isinstance(exc, OutputError):  # a failed write in the run directory: say how to go on
            raise OutputError(
                f"{exc}; the last complete checkpoint is {last_checkpoint}: make room, then continue with --resume"
                if last_checkpoint is not None
                else f"{exc}; no checkpoint was written: make room, then start again with --resume"
            ) from exc
        raise

    # -- the end: an interrupted run saves where it stopped; check that the ranks agree -------------
    if last_saved != state.step:
        last_checkpoint = saver.save(state, reason="interrupted", step_file=True, best=False)
    end: dict[str, Any] = {}
    if env.is_distributed:
        end["rank_param_sha256"] = hashes = distributed.all_gather_object(parameter_sha256(model))
        if len(set(hashes)) != 1:
            logger.message(
                "warning: the ranks ended with different weights (see rank_param_sha256 in the log)"
            )
    status: Literal["completed", "interrupted"] = "interrupted" if stopping else "completed"
    logger.record("end", step=state.step, status=status, **end)
    if stopping:
        logger.message(f"stopped at step {state.step}; continue with --resume ({last_checkpoint})")
    return TrainResult(
        status=status,
        step=state.step,
        checkpoint=last_checkpoint if env.is_main else None,
        best_val_nll=state.best_val_nll if math.isfinite(state.best_val_nll) else None,
        signal=(stop.signum or signal.SIGTERM) if stopping else None,  # SIGTERM: another rank's signal
    )


def _restore(
    checkpoint: Checkpoint,
    model: WaveGlow,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ema: ExponentialMovingAverage | None,
    config: ExperimentConfig,
    env: DistributedEnv,
    logger: RunLogger,
) -> TrainerState:
    """Load weights, optimizer, scaler, weight average and RNG states from ``checkpoint``; return
    the loop counters. With an average, the checkpoint's model holds the average and the training
    weights are in ``training_state["raw_state_dict"]``."""
    tcfg = config.train
    training_state = checkpoint.training_state or {}
    model.load_state_dict(training_state.get("raw_state_dict") or checkpoint.state_dict)
    if ema is not None:
        if training_state.get("ema"):
            ema.load_state_dict(training_state["ema"])
        else:  # the run had no average so far: start it from the current weights
            ema.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}
            logger.message("train.ema_decay is set but the checkpoint holds no average: starting one now")
    optimizer.load_state_dict(training_state["optimizer"])
    for group in optimizer.param_groups:  # the current config sets the hyper-parameters
        group.update(betas=tcfg.adam_betas, weight_decay=tcfg.weight_decay)
    if scaler.is_enabled() and training_state["scaler"]:  # empty when saved without fp16
        scaler.load_state_dict(training_state["scaler"])
    state = TrainerState.from_dict(training_state["trainer"])
    if training_state["global_batch_size"] != tcfg.batch_size:
        # The epoch's order is per clip: continue after the clips already seen.
        state.batch_in_epoch = state.batch_in_epoch * training_state["global_batch_size"] // tcfg.batch_size
    rng = training_state["rng"]  # one entry per rank of the run that saved it
    restore_rng_state(rng[env.rank] if env.rank < len(rng) else rng[0])
    # Everything is copied into the live objects: drop the CPU copies (as large as model + Adam).
    checkpoint.state_dict.clear()
    training_state.clear()

    logger.message(f"resumed from {checkpoint.path} at step {state.step}")
    old, new = checkpoint.metadata.get("experiment") or {}, config.to_dict()
    changes = _config_changes(
        {k: old.get(k, {}) for k in ("data", "train")}, {k: new[k] for k in ("data", "train")}
    )
    if changes:
        logger.message("settings changed since the checkpoint: " + "; ".join(changes))
    return state


def _batches(
    train_set: SegmentDataset,
    env: DistributedEnv,
    state: TrainerState,
    config: ExperimentConfig,
    *,
    pin_memory: bool,
) -> Iterator[torch.Tensor]:
    """This rank's training batches, epoch after epoch, from the position held in ``state``."""
    while True:
        yield from epoch_loader(
            train_set,
            env,
            batch_size=config.train.batch_size // env.world_size,
            seed=config.train.seed,
            epoch=state.epoch,
            start_batch=state.batch_in_epoch,
            num_workers=config.data.num_workers,
            pin_memory=pin_memory,
        )
        state.epoch += 1  # the epoch ran out of batches
        state.batch_in_epoch = 0


def _optimize(
    ddp_model: torch.nn.Module,
    model: WaveGlow,
    mel_fn: MelSpectrogram,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    audio: torch.Tensor,
    tcfg: TrainConfig,
    device: torch.device,
    amp_dtype: torch.dtype,
    step: int,
    given_mel: torch.Tensor | None = None,
) -> tuple[float, float, float, float | None, float | None]:
    """One training step on ``audio`` ``(B, T)``: returns ``(nll, nvidia_loss, grad_norm, aux, f0)``.

    With ``train.aux_stft_weight`` or ``aux_mel_weight`` above 0 (on every ``aux_every``-th step)
    the flow is also run backwards from ``z ~ N(0, aux_sigma^2)`` on the same mels, and the
    weighted multi-resolution STFT loss and log-mel L1 of that audio against the batch are added
    to the NLL; ``aux`` is their weighted sum (else None). A source model (``model.source``) is
    driven by the batch's own pitch (YIN) and its pitch predictor's loss ``f0`` (unweighted; else
    None) is added with ``train.f0_loss_weight``.

    ``given_mel`` ``(B, n_mels, frames)`` (``data.mel_dir``) conditions the flow instead of the mel
    computed from ``audio``, which stays the target of the log-mel loss.

    The losses are averaged over ranks and the gradient norm (before clipping) is the same on
    every rank (DDP averages the gradients), so all ranks agree on whether the step is finite.
    Only then is the optimizer stepped; otherwise weights and optimizer state stay as they were.
    """
    with torch.no_grad():
        mel = mel_fn(audio)  # (B, n_mels, frames), float32: the STFT runs outside autocast
    target_mel = mel  # the audio's own mel, which the log-mel auxiliary loss compares against
    if given_mel is not None:  # data.mel_dir: the flow is conditioned on the given mels instead
        mel = given_mel
    excitation, pitch = None, None
    if model.has_source:  # the reference's own pitch drives the excitation (a random start phase)
        f0_hz, voiced = track_f0(audio, mel_fn.config.sample_rate, model.hop_length)
        pitch = (f0_hz / mel_fn.config.sample_rate, voiced)
        phase0 = torch.rand(audio.shape[0], device=audio.device)
        excitation = sine_excitation(pitch[0], voiced, model.hop_length, audio.shape[1], phase0)
    with _autocast(device, amp_dtype):
        z, logdet = ddp_model(audio, mel, excitation)  # z (B, n_group, T / n_group), logdet (B,) float32
    # The loss in float32, outside autocast: a sum over ~1e5 samples per item.
    loss = losses.nll(z.float(), logdet.float(), tcfg.sigma).mean()
    total, aux = loss, None
    f0_loss = None
    if pitch is not None:
        f0_loss = model.f0_predictor.loss(mel, *pitch)
        if tcfg.f0_loss_weight > 0:
            total = total + tcfg.f0_loss_weight * f0_loss
    if (tcfg.aux_stft_weight > 0 or tcfg.aux_mel_weight > 0) and step % tcfg.aux_every == 0:
        with _autocast(device, amp_dtype):
            generated, _ = model.inverse(torch.randn_like(z) * tcfg.aux_sigma, mel, excitation)  # (B, T)
        generated = generated.float()
        aux = audio.new_zeros(())
        if tcfg.aux_stft_weight > 0:
            aux = aux + tcfg.aux_stft_weight * losses.multi_resolution_stft_loss(generated, audio)
        if tcfg.aux_mel_weight > 0:
            aux = aux + tcfg.aux_mel_weight * (mel_fn(generated) - target_mel).abs().mean()
        total = total + aux
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)  # clip and measure the true gradient (no-op unless fp16)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip_norm or math.inf).item()
    nvidia = losses.nvidia_loss(z.detach().float(), logdet.detach().float(), tcfg.sigma).mean()
    loss_value, nvidia_value = distributed.all_reduce_(torch.stack([loss.detach(), nvidia]), "mean").tolist()
    if math.isfinite(loss_value) and math.isfinite(grad_norm):
        scaler.step(optimizer)
    scaler.update()  # with fp16, an overflow lowers the loss scale
    optimizer.zero_grad(set_to_none=True)
    aux_value = None if aux is None else float(aux.detach())
    f0_value = None if f0_loss is None else float(f0_loss.detach())
    return loss_value, nvidia_value, grad_norm, aux_value, f0_value


def _nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the parameters holding NaN/Inf (one max-norm per tensor, fused where torch can)."""
    named = [(name, p.detach()) for name, p in model.named_parameters()]
    if not named:
        return []
    tensors = [p for _, p in named]
    foreach_norm = getattr(torch, "_foreach_norm", None)
    if foreach_norm is not None:
        norms = torch.stack(foreach_norm(tensors, math.inf))
    else:  # pragma: no cover (every torch this package supports has it)
        norms = torch.stack([torch.linalg.vector_norm(p, math.inf) for p in tensors])
    finite = torch.isfinite(norms)
    if bool(finite.all()):
        return []
    return [name for (name, _), ok in zip(named, finite.tolist()) if not ok]


def _broken_weights_message(
    step: int, names: list[str], last_checkpoint: Path | None, tcfg: TrainConfig
) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    where = (
        f"The last good weights are in {last_checkpoint}"
        if last_checkpoint is not None
        else "No checkpoint had been written yet"
    )
    return (
        f"training stopped at step {step}: the optimizer step left non-finite (NaN/Inf) values in "
        f"{len(names) or 'some'} parameter(s) ({shown or 'on another rank'}) although the loss and gradient "
        f"norm were finite (a corrupt optimizer state, or an update that overflowed). These weights were "
        f"not saved. {where}. Try a lower train.learning_rate (now {tcfg.learning_rate}) or "
        f"train.grad_clip_norm, or continue from an earlier checkpoint."
    )


def _autocast(device: torch.device, amp_dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if amp_dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


class _Window:
    """Running sums of the good steps since the last ``train`` record."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps = 0
        self.skipped = 0
        self.sums = [0.0, 0.0, 0.0]  # loss, nvidia_loss, grad_norm
        self.aux_sum, self.aux_steps = 0.0, 0
        self.f0_sum, self.f0_steps = 0.0, 0

    def add(
        self,
        loss: float,
        nvidia_loss: float,
        grad_norm: float,
        aux: float | None = None,
        f0: float | None = None,
    ) -> None:
        self.steps += 1
        self.sums = [s + v for s, v in zip(self.sums, (loss, nvidia_loss, grad_norm))]
        if aux is not None:
            self.aux_sum += aux
            self.aux_steps += 1
        if f0 is not None:
            self.f0_sum += f0
            self.f0_steps += 1

    def summary(self, samples_per_step: int) -> dict[str, float | int | None]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        mean = [s / self.steps for s in self.sums] if self.steps else [None, None, None]
        return {
            "loss": mean[0],
            "nll": mean[0],
            "nvidia_loss": mean[1],
            "grad_norm": mean[2],
            "samples_per_s": (self.steps + self.skipped) * samples_per_step / elapsed,
            "skipped": self.skipped,
            "aux_loss": self.aux_sum / self.aux_steps if self.aux_steps else None,
            "f0_loss": self.f0_sum / self.f0_steps if self.f0_steps else None,
        }


def _on_device(
    batch: torch.Tensor | list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A training batch on ``device``: audio ``(B, L)`` and, with ``data.mel_dir``, its mels ``(B, n_mels, F)``."""
    audio, mel = (batch, None) if isinstance(batch, torch.Tensor) else batch
    audio = audio.to(device, non_blocking=True)
    return audio, None if mel is None else mel.to(device, non_blocking=True)


# -- validation ------------------------------------------------------------------------------------
def _mel_of(
    val_set: UtteranceDataset, index: int, audio: torch.Tensor, mel_fn: MelSpectrogram
) -> torch.Tensor:
    """The mel of validation utterance ``index`` (``audio`` ``(1, T)``): the given one with ``data.mel_dir``."""
    if isinstance(val_set, MelUtteranceDataset):
        return val_set.mel(index, audio.shape[1]).to(audio.device).unsqueeze(0)  # (1, n_mels, frames)
    return mel_fn(audio)


@torch.no_grad()
def _validate(
    model: WaveGlow,
    mel_fn: MelSpectrogram,
    val_set: UtteranceDataset,
    config: ExperimentConfig,
    env: DistributedEnv,
    device: torch.device,
    amp_dtype: torch.dtype,
    state: TrainerState,
    logger: RunLogger,
) -> bool:
    """Validation NLL over the whole set (all ranks); logs it, updates ``state.best_val_nll``.

    Runs the unwrapped model one utterance at a time (utterances differ in length), so no DDP
    collective is involved until the sums are all-reduced. Returns True if the NLL improved.
    """
    sigma = config.train.sigma
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # sum of nll * T, nvidia_loss * T, T
    for index in range(env.rank, len(val_set), env.world_size):  # rank r takes utterances r, r + W, ...
        audio = val_set[index][0].to(device).unsqueeze(0)  # (T,) -> (1, T)
        mel = _mel_of(val_set, index, audio, mel_fn)  # (1, n_mels, frames)
        with _autocast(device, amp_dtype):
            z, logdet = model(audio, mel)
        num_samples = audio.shape[1]
        nll = losses.nll(z.float(), logdet.float(), sigma).double().sum()
        nvidia = losses.nvidia_loss(z.float(), logdet.float(), sigma).double().sum()
        totals += torch.stack([nll * num_samples, nvidia * num_samples, totals.new_tensor(num_samples)])
    distributed.all_reduce_(totals)
    val_nll, val_nvidia = (totals[:2] / totals[2]).tolist()
    num_samples = int(totals[2].item())
    improved = math.isfinite(val_nll) and val_nll < state.best_val_nll
    if improved:
        state.best_val_nll = val_nll
    logger.record(
        "val",
        step=state.step,
        val_nll=val_nll,
        val_nvidia_loss=val_nvidia,
        val_num_samples=num_samples,
        best_val_nll=state.best_val_nll,
    )
    logger.message(
        f"step {state.step}: validation NLL {val_nll:.4f} nats/sample (NVIDIA loss {val_nvidia:.4f})"
        + (" (best)" if improved else "")
    )
    if env.is_main and logger.has_tensorboard:
        _log_audio_samples(model, mel_fn, val_set, config, device, state.step, logger)
    model.train()
    return improved


def _log_audio_samples(
    model: WaveGlow,
    mel_fn: MelSpectrogram,
    val_set: UtteranceDataset,
    config: ExperimentConfig,
    device: torch.device,
    step: int,
    logger: RunLogger,
) -> None:
    """Synthesize the first ``num_audio_samples`` validation utterances at sigma 0.6 for TensorBoard."""
    generator = torch.Generator(device=device).manual_seed(config.train.seed)  # the same noise every time
    sample_rate = config.mel.sample_rate
    for index in range(min(config.train.num_audio_samples, len(val_set))):
        audio, name = val_set[index]
        audio = audio.to(device).unsqueeze(0)  # (T,) -> (1, T)
        mel = _mel_of(val_set, index, audio, mel_fn)  # (1, n_mels, frames)
        generated = model.infer(mel, sigma=SAMPLE_SIGMA, generator=generator)[:, : audio.shape[1]]
        generated = torch.nan_to_num(generated).clamp(-1.0, 1.0)  # a diverging model must not break logging
        logger.audio(f"generated/{name}", generated[0], sample_rate, step)
        logger.audio(f"target/{name}", audio[0], sample_rate, step)
        logger.mel_images({f"generated_mel/{name}": mel_fn(generated)[0], f"target_mel/{name}": mel[0]}, step)


# -- checkpoints -------------------------------------------------------------------------------------
@dataclass
class _Checkpointer:
    """Writes the run's state (rank 0) as ``ckpt_{step}.pt`` + ``last.pt`` and/or ``best.pt``."""

    run: RunDir
    model: WaveGlow
    config: ExperimentConfig
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    env: DistributedEnv
    logger: RunLogger
    ema: ExponentialMovingAverage | None = None
    keep: set[Path] = field(default_factory=set)  # never pruned: unreadable files a resume skipped
    init_from: dict[str, Any] | None = None  # train.init_from's source (InitWeights.record)

    def save(self, state: TrainerState, *, reason: str, step_file: bool, best: bool) -> Path | None:
        """Collective: every rank contributes its RNG state and waits at the barrier until rank 0
        has written, so no rank runs ahead of a checkpoint that might be resumed from. Returns the
        path written (``None`` on other ranks).
        """
        rng_states = distributed.all_gather_object(capture_rng_state())
        path = None
        if self.env.is_main:
            training_state = {
                "trainer": state.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_states,  # one entry per rank
                "world_size": self.env.world_size,
                "global_batch_size": self.config.train.batch_size,
            }
            metadata = {
                "experiment": self.config.to_dict(),
                "reason": reason,
                "cpu_seconds": state.cpu_seconds,
            }
            if self.init_from is not None:
                metadata["init_from"] = self.init_from
            path = self.run.checkpoint_path(state.step) if step_file else self.run.best
            if self.ema is not None:  # the saved model is the average; the training weights ride along
                training_state["raw_state_dict"] = {
                    k: v.detach().clone() for k, v in self.model.state_dict().items()
                }
                training_state["ema"] = self.ema.state_dict()
            with (
                self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext(),
                writing(path, "checkpoint"),
            ):
                save_checkpoint(
                    path, self.model, self.config.mel, training_state=training_state, metadata=metadata
                )
            self.keep.discard(path)  # written by this run now (it replaced an unreadable file)
            if step_file:
                with writing(self.run.last, "checkpoint"):
                    self.run.point(self.run.last, path)
                if best:
                    with writing(self.run.best, "checkpoint"):
                        self.run.point(self.run.best, path)
                self.run.prune(self.config.train.keep_last, written=path, keep=self.keep)
            self.logger.record(
                "checkpoint", step=state.step, path=str(path), reason=reason, cpu_s=state.cpu_seconds
            )
        distributed.barrier()
        return path
