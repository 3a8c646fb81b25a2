"""What a checkpoint must hold, besides the weights, to continue a run exactly.

:class:`TrainerState` holds the loop's counters (step, data position, non-finite counts, best
validation NLL). :func:`capture_rng_state`/:func:`restore_rng_state` move the random number
generators of torch (CPU and CUDA), Python's ``random`` and numpy's legacy global generator in and
out of plain tensors, numbers and lists, so a checkpoint holding them loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class TrainerState:
    """Counters of the training loop.

    ``step``: optimizer steps attempted so far (skipped non-finite steps count: the learning-rate
    schedule and ``max_steps`` are in attempted steps). ``epoch`` / ``batch_in_epoch``: the next
    batch to draw is batch ``batch_in_epoch`` of epoch ``epoch`` in the seeded order.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    nonfinite_steps: int = 0  # steps skipped for a non-finite loss or gradient norm, in total
    nonfinite_batches: int = 0  # batches skipped because their audio held NaN/Inf, in total
    consecutive_nonfinite: int = 0  # skipped steps in a row (either cause); reset by a good step
    best_val_nll: float = math.inf
    cpu_seconds: float = 0.0  # CPU time of this rank over every session of the run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"trainer state has unknown field(s) {unknown}")
        return cls(**data)


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random number generator, as tensors, numbers and lists."""
    version, mt_state, gauss_next = random.getstate()
    bit_generator, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {
            "version": version,
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "bit_generator": bit_generator,
            "keys": torch.from_numpy(keys.astype(np.int64)),  # uint32 has no weights-only torch dtype
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA states are restored when the device count matches."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            npy["bit_generator"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def parameter_sha256(module: torch.nn.Module) -> str:
    """One SHA-256 over every parameter's name and bytes: equal hashes mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
