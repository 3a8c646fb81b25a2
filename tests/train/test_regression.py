"""The trainer's numbers, pinned: five steps of the tiny run must log the losses they logged when
these values were written down. Any change to the model's initialisation, the data pipeline
(crops, dequantisation noise, batching), the loss, the optimiser or the schedule moves them.

If a change is meant to alter the numbers, rerun this file: the failure message prints the new
values in the form of the tables below, to be pasted in with a line saying why they moved.
"""

from __future__ import annotations

import pytest

from tests.helpers import read_log
from waveflow.train import train

# Produced with `OMP_NUM_THREADS=1 python -m pytest -q tests/train/test_regression.py` (torch 2.13,
# CPU, one thread) on commit 4efedc7 plus the uncommitted working tree of the same day, from the
# `tiny` fixture (tests/train/conftest.py): 5 speech-like clips, the 4-flow waveglow_tiny model at
# 8 kHz with 16 mels, batch 2, Adam at 1e-3, train.seed = 1234 (the trainer seeds every RNG from
# it, so the global seed does not matter).
STEPS = 5
LOSS = {  # step -> logged training loss (nats per sample)
    1: 0.9504721164703369,
    2: 0.9434252977371216,
    3: 0.9473108649253845,
    4: 0.9176148176193237,
    5: 0.8903664350509644,
}
GRAD_NORM = {  # step -> logged gradient norm before clipping
    1: 1.1294987201690674,
    2: 1.1187798976898193,
    3: 1.128369688987732,
    4: 1.2313804626464844,
    5: 1.352705717086792,
}
VAL_NLL = 0.88692806661129  # validation NLL after step 5
REL = 1e-4  # float32 on another CPU or BLAS build may round differently; a real change moves more


def test_five_steps_log_the_pinned_losses(tiny):
    overrides = (
        f"train.max_steps={STEPS}",
        f"train.validate_every={STEPS}",
        f"train.checkpoint_every={STEPS}",
    )
    config = tiny.config(*overrides)
    assert config.train.seed == 1234
    train(config, tiny.run_dir())
    log = read_log(tiny.run_dir())
    loss = {r["step"]: r["loss"] for r in log if r["event"] == "train"}
    grad_norm = {r["step"]: r["grad_norm"] for r in log if r["event"] == "train"}
    (val_nll,) = [r["val_nll"] for r in log if r["event"] == "val"]
    observed = f"LOSS = {loss}\nGRAD_NORM = {grad_norm}\nVAL_NLL = {val_nll}"
    assert loss == pytest.approx(LOSS, rel=REL), observed
    assert grad_norm == pytest.approx(GRAD_NORM, rel=REL), observed
    assert val_nll == pytest.approx(VAL_NLL, rel=REL), observed
