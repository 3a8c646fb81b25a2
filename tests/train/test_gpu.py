"""Mixed precision on CUDA: bf16 autocast and fp16 with a GradScaler train, save and resume."""

from __future__ import annotations

import math

import pytest
import torch

from tests.train.conftest import load, read_log, train_losses
from waveflow.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(tiny, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    common = [
        "train.device=cuda",
        f"train.precision={precision}",
        "train.batch_size=4",
        "data.validation_files=",
    ]
    result = train(tiny.config(*common, "train.max_steps=30"), tiny.run_dir())
    assert result.status == "completed"
    start = read_log(tiny.run_dir())[0]
    assert (start["precision"], start["device"]) == (precision, f"cuda:{torch.cuda.current_device()}")
    losses = [v for v in train_losses(tiny.run_dir()).values() if v is not None]
    assert len(losses) >= 25 and all(math.isfinite(v) for v in losses)  # fp16 may skip a few overflow steps
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, losses

    ckpt = load(tiny.run_dir() / "checkpoints" / "last.pt")
    scaler_state = ckpt.training_state["scaler"]
    assert ("scale" in scaler_state) == (precision == "fp16")
    assert all(t.device.type == "cpu" for t in ckpt.state_dict.values())  # loaded for the CPU
    assert train(tiny.config(*common, "train.max_steps=35"), tiny.run_dir(), resume=True).step == 35
