"""Pieces of the trainer in isolation: schedule, devices, torchrun env, run directory, RNG state."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from waveflow.config import TrainConfig
from waveflow.train import learning_rate_at
from waveflow.train.batches import epoch_loader
from waveflow.train.distributed import DistributedEnv
from waveflow.train.loop import resolve_device, resolve_precision
from waveflow.train.run_dir import RunDir
from waveflow.train.state import TrainerState, capture_rng_state, parameter_sha256, restore_rng_state


# -- learning-rate schedule ------------------------------------------------------------------------
def test_warmup_then_constant():
    cfg = TrainConfig(learning_rate=1e-3, warmup_steps=4, max_steps=100)
    lrs = [learning_rate_at(s, cfg) for s in range(8)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4:] == pytest.approx([1e-3] * 4)


def test_cosine_decays_to_the_floor_at_max_steps():
    cfg = TrainConfig(
        learning_rate=1e-3, lr_schedule="cosine", warmup_steps=10, min_learning_rate=1e-5, max_steps=110
    )
    lrs = [learning_rate_at(s, cfg) for s in range(10, 111)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[50] == pytest.approx(0.5 * (1e-3 + 1e-5))  # half way
    assert lrs[-1] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


# -- devices and precision ---------------------------------------------------------------------------
def test_cpu_trains_in_fp32_and_refuses_amp():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == torch.float32
    assert resolve_precision("fp32", cpu) == torch.float32
    for precision in ("bf16", "fp16"):
        with pytest.raises(ValueError, match=f"precision={precision} needs a CUDA device"):
            resolve_precision(precision, cpu)


def test_device_names():
    single = DistributedEnv()
    assert resolve_device("cpu", single) == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu0", single)
    if not torch.cuda.is_available():
        assert resolve_device("auto", single) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda", single)


# -- torchrun environment ----------------------------------------------------------------------------
def test_torchrun_environment():
    assert DistributedEnv.from_environ({}) == DistributedEnv(rank=0, local_rank=0, world_size=1)
    env = DistributedEnv.from_environ(
        {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    )
    assert (env.rank, env.local_rank, env.world_size, env.is_distributed, env.is_main) == (
        3,
        1,
        4,
        True,
        False,
    )
    with pytest.raises(ValueError, match="WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        DistributedEnv.from_environ({"RANK": "0"})
    with pytest.raises(ValueError, match="inconsistent"):
        DistributedEnv.from_environ(
            {"RANK": "4", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
        )


# -- data order --------------------------------------------------------------------------------------
class _Clips(torch.utils.data.Dataset):
    """Item i of epoch e is the number 1000 e + i: shows which clip a batch holds."""

    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(1000 * self.epoch + index)


def test_global_batches_do_not_depend_on_world_size_and_resume_mid_epoch():
    data = _Clips(11)
    one = [b.tolist() for b in epoch_loader(data, DistributedEnv(), batch_size=4, seed=5, epoch=2)]
    assert len(one) == 2 and all(v // 1000 == 2 for b in one for v in b)  # 11 // 4 full batches, epoch 2
    ranks = [
        [
            b.tolist()
            for b in epoch_loader(data, DistributedEnv(rank=r, world_size=2), batch_size=2, seed=5, epoch=2)
        ]
        for r in range(2)
    ]
    for k, batch in enumerate(one):
        assert sorted(ranks[0][k] + ranks[1][k]) == sorted(batch)  # the ranks split the same global batch
    resumed = [
        b.tolist() for b in epoch_loader(data, DistributedEnv(), batch_size=4, seed=5, epoch=2, start_batch=1)
    ]
    assert resumed == one[1:]
    other_epoch = [b.tolist() for b in epoch_loader(data, DistributedEnv(), batch_size=4, seed=5, epoch=3)]
    assert [v % 1000 for v in other_epoch[0]] != [v % 1000 for v in one[0]]  # reshuffled


# -- run directory -----------------------------------------------------------------------------------
def test_run_dir_links_prunes_and_cleans(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.holds_run()
    run.create()
    for step in (5, 10, 15):
        run.checkpoint_path(step).write_bytes(bytes([step]))
    run.point(run.last, run.checkpoint_path(15))
    run.point(run.best, run.checkpoint_path(5))
    assert run.holds_run()
    assert run.resume_candidates()[:3] == [run.checkpoint_path(s) for s in (15, 10, 5)]
    assert run.prune(keep_last=1, written=run.checkpoint_path(15)) == [
        run.checkpoint_path(5),
        run.checkpoint_path(10),
    ]
    assert run.best.read_bytes() == bytes([5])  # best.pt outlives the pruned step file it was linked to
    assert run.last.read_bytes() == bytes([15])
    partial = run.checkpoints / ".ckpt_00000020.pt.0123.tmp"
    partial.write_bytes(b"half")
    assert run.remove_partial_files() == [partial]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best.pt", "ckpt_00000015.pt", "last.pt"]


def test_prune_never_deletes_the_new_checkpoint_newer_step_files_or_kept_ones(tmp_path):
    # A resume that skipped an unreadable ckpt_20 continues from step 10 and writes ckpt_12. Before,
    # pruning counted the unreadable ckpt_20 among the newest and deleted ckpt_12 (the file just
    # written) and ckpt_10 (the last readable one), keeping only the unreadable file.
    run = RunDir(tmp_path / "run")
    run.create()
    for step in (5, 10, 12, 20):
        run.checkpoint_path(step).write_bytes(bytes([step]))
    assert run.prune(keep_last=1, written=run.checkpoint_path(12)) == [
        run.checkpoint_path(5),
        run.checkpoint_path(10),
    ]
    assert [s for s, _ in run.step_checkpoints()] == [12, 20]
    # Files it is told to keep (unreadable ones a resume skipped) stay however old they are.
    run.checkpoint_path(3).write_bytes(b"unreadable")
    run.checkpoint_path(14).write_bytes(bytes([14]))
    assert run.prune(keep_last=1, written=run.checkpoint_path(14), keep={run.checkpoint_path(3)}) == [
        run.checkpoint_path(12)
    ]
    assert [s for s, _ in run.step_checkpoints()] == [3, 14, 20]
    with pytest.raises(ValueError, match="not a step checkpoint"):
        run.prune(keep_last=1, written=run.last)


def test_write_failures_name_the_file_and_the_cause(tmp_path):
    import errno

    from waveflow.errors import OutputError
    from waveflow.train.run_dir import output_error, writing

    target = tmp_path / "x.pt"
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*x.pt: no space left on device") as info:
        with writing(target, "checkpoint"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    # torch's zip writer turns the file's OSError into a RuntimeError raised while handling it.
    chained = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    chained.__context__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(output_error(target, "checkpoint", chained)).endswith("x.pt: disk quota exceeded")
    assert output_error(target, "checkpoint", RuntimeError("a bug")) is None
    with pytest.raises(KeyError), writing(target, "checkpoint"):
        raise KeyError("not an I/O failure: unchanged")


# -- state -------------------------------------------------------------------------------------------
def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002
    np.random.standard_normal()  # noqa: NPY002  (leaves a cached Gaussian in the legacy state)
    torch.save({"rng": capture_rng_state()}, tmp_path / "s.pt")
    expected = (torch.rand(3), random.random(), np.random.standard_normal(2))  # noqa: NPY002
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    restore_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]
    assert np.array_equal(np.random.standard_normal(2), expected[2])  # noqa: NPY002


def test_trainer_state_round_trip_and_unknown_fields():
    state = TrainerState(step=7, epoch=2, batch_in_epoch=1, nonfinite_steps=1, best_val_nll=-math.pi)
    assert TrainerState.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="typo"):
        TrainerState.from_dict({**state.to_dict(), "typo": 1})


def test_parameter_hash_sees_one_ulp():
    model = torch.nn.Linear(3, 2)
    before = parameter_sha256(model)
    with torch.no_grad():
        model.weight[0, 0] = torch.nextafter(model.weight[0, 0], torch.tensor(math.inf))
    assert parameter_sha256(model) != before
