"""Training in child processes: surviving SIGKILL, and 2-process DDP (gloo) against one process."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch

from tests.conftest import REPO
from tests.train.conftest import PYTHON, load, read_log, same_tensors, subprocess_env, train_losses
from waveflow.train import train


def _last_logged_step(run_dir) -> int:
    try:
        lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines if line.endswith("}")]
    return max(steps, default=0)


@pytest.mark.slow
def test_sigkill_leaves_only_loadable_checkpoints_and_resume_matches(tiny):
    overrides = [
        "train.max_steps=60",
        "train.checkpoint_every=3",
        "train.keep_last=2",
        "data.validation_files=",
    ]
    run = tiny.run_dir("killed")
    command = [
        PYTHON,
        "-m",
        "waveflow",
        "train",
        "--config",
        str(tiny.config_path),
        "--run-dir",
        str(run),
        *overrides,
    ]
    child = subprocess.Popen(
        command, cwd=REPO, env=subprocess_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        # Kill once a checkpoint exists and the run has moved on past it (mid-run).
        while _last_logged_step(run) < 8:
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    killed_at = _last_logged_step(run)
    assert killed_at < 60

    checkpoints = sorted((run / "checkpoints").glob("*.pt"))
    assert {p.name for p in checkpoints} >= {"last.pt"} and len(checkpoints) >= 2
    steps = {p.name: load(p).training_state["trainer"]["step"] for p in checkpoints}  # every file loads
    assert steps["last.pt"] == max(steps.values()) and steps["last.pt"] % 3 == 0

    resumed = subprocess.run(
        [*command, "--resume"], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not [
        p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")
    ]  # partial writes cleaned
    final = load(run / "checkpoints" / "last.pt")
    assert final.training_state["trainer"]["step"] == 60

    # Killing and resuming changes nothing: same losses and bitwise the same weights as one run.
    train(tiny.config(*overrides), tiny.run_dir("one_go"))
    assert train_losses(run) == train_losses(tiny.run_dir("one_go"))
    assert same_tensors(final.state_dict, load(tiny.run_dir("one_go") / "checkpoints" / "last.pt").state_dict)


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical_and_matches_one_process(tiny):
    overrides = [
        "train.max_steps=6",
        "train.batch_size=4",
        "train.validate_every=3",
        "train.checkpoint_every=3",
    ]
    run = tiny.run_dir("ddp")
    command = [
        PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "waveflow", "train", "--config", str(tiny.config_path), "--run-dir", str(run), *overrides,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]

    log = read_log(run)
    start, end = log[0], log[-1]
    assert start["world_size"] == 2 and end["status"] == "completed"
    hashes = end["rank_param_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks hold bitwise-identical weights
    assert len([r for r in log if r["event"] == "start"]) == 1  # rank 0 alone writes the log

    train(tiny.config(*overrides), tiny.run_dir("single"))
    ddp_losses, single_losses = train_losses(run), train_losses(tiny.run_dir("single"))
    assert list(ddp_losses) == list(single_losses) == list(range(1, 7))
    assert max(abs(ddp_losses[s] - single_losses[s]) for s in ddp_losses) < 1e-5
    ddp_val = [r["val_nll"] for r in log if r["event"] == "val"]
    single_val = [r["val_nll"] for r in read_log(tiny.run_dir("single")) if r["event"] == "val"]
    assert len(ddp_val) == 2 and ddp_val == pytest.approx(single_val, abs=1e-5)
    a = load(run / "checkpoints" / "last.pt").state_dict
    b = load(tiny.run_dir("single") / "checkpoints" / "last.pt").state_dict
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert not all(torch.equal(a[k], load(run / "checkpoints" / "ckpt_00000003.pt").state_dict[k]) for k in a)
