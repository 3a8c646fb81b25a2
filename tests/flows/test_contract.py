"""Every Flow class honours the contract: shapes, dtype, round trip, log-det sign and value."""

from __future__ import annotations

import pytest
import torch

from tests.flows.contract import check_batch_consistency, check_jacobian, check_logdet_dtype, check_round_trip
from tests.helpers import randomize_  # also imported from here by tests/test_model.py and others
from waveflow.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPermutation,
    ChannelReverse,
    EarlyOutputSchedule,
    FlowStep,
    InvertibleConv1x1,
    LUInvertibleConv1x1,
    MultiScaleFlow,
    SequentialFlow,
    Squeeze,
)
from waveflow.nn import WaveNet

COND_CHANNELS = 3


def wavenet(n_in: int, n_out: int) -> WaveNet:
    return WaveNet(n_in, n_out, COND_CHANNELS, n_layers=2, n_channels=8, kernel_size=3)


def affine(c: int, swap: bool = False, clamp: float | None = None) -> AffineCoupling:
    n_a = c // 2
    return randomize_(AffineCoupling(c, wavenet(n_a, 2 * (c - n_a)), swap=swap, log_scale_clamp=clamp))


def additive(c: int, swap: bool = False) -> AdditiveCoupling:
    n_a = c // 2
    return randomize_(AdditiveCoupling(c, wavenet(n_a, c - n_a), swap=swap))


def actnorm(c: int) -> ActNorm:
    m = ActNorm(c)
    m.initialized.fill_(True)
    return randomize_(m)


def multiscale() -> MultiScaleFlow:
    schedule = EarlyOutputSchedule.compute(num_steps=4, num_channels=6, every=2, size=2)
    steps = [FlowStep(affine(c), mix=randomize_(InvertibleConv1x1(c), 0.1)) for c in schedule.channels]
    return MultiScaleFlow(steps, schedule)


# name -> (factory, number of channels or None for (B, T) inputs)
FLOWS = {
    "affine": (lambda: affine(4), 4),
    "affine_odd_channels": (lambda: affine(5), 5),
    "affine_swap": (lambda: affine(4, swap=True), 4),
    "affine_clamped": (lambda: affine(4, clamp=0.5), 4),
    "additive": (lambda: additive(4), 4),
    "additive_swap": (lambda: additive(3, swap=True), 3),
    "conv1x1": (lambda: randomize_(InvertibleConv1x1(4), 0.2), 4),
    "conv1x1_lu": (lambda: randomize_(LUInvertibleConv1x1(4), 0.2), 4),
    "actnorm": (lambda: actnorm(4), 4),
    "reverse": (lambda: ChannelReverse(4), 4),
    "permutation": (lambda: ChannelPermutation([2, 0, 3, 1]), 4),
    "flow_step_glow": (
        lambda: FlowStep(affine(4), mix=randomize_(LUInvertibleConv1x1(4), 0.2), norm=actnorm(4)),
        4,
    ),
    "sequential": (lambda: SequentialFlow([affine(4), ChannelReverse(4), additive(4)]), 4),
    "multiscale": (multiscale, 6),
    "squeeze": (lambda: Squeeze(4), None),
}


def make_input(channels: int | None, batch: int = 2, length: int = 8, dtype=torch.float32):
    if channels is None:
        x = torch.randn(batch, length * 4, dtype=dtype)
    else:
        x = torch.randn(batch, channels, length, dtype=dtype)
    cond = torch.randn(batch, COND_CHANNELS, length if channels is not None else length * 4, dtype=dtype)
    return x, cond


@pytest.fixture(params=sorted(FLOWS), ids=sorted(FLOWS))
def flow_case(request):
    factory, channels = FLOWS[request.param]
    return factory().eval(), channels


def test_round_trip_and_logdet_sign(flow_case):
    flow, channels = flow_case
    x, cond = make_input(channels)
    with torch.no_grad():
        check_round_trip(flow, x, cond)


def test_logdet_dtype_and_device(flow_case):
    flow, channels = flow_case
    x, cond = make_input(channels)
    with torch.no_grad():
        check_logdet_dtype(flow, x, cond)


def test_logdet_matches_autograd_jacobian(flow_case):
    flow, channels = flow_case
    x, cond = make_input(channels, batch=1, length=4)
    check_jacobian(flow, x, cond)


def test_per_position_logdet_sums_to_forward(flow_case):
    """``forward_per_position`` gives ``forward``'s output and splits its log-det over time."""
    flow, channels = flow_case
    x, cond = make_input(channels, length=6)
    with torch.no_grad():
        y, logdet = flow(x, cond)
        y_pp, logdet_pp = flow.forward_per_position(x, cond)
    torch.testing.assert_close(y_pp, y)
    assert logdet_pp.dim() == 2 and logdet_pp.shape[0] == x.shape[0]
    torch.testing.assert_close(logdet_pp.sum(1), logdet, rtol=1e-5, atol=1e-5)


def test_batch_consistency(flow_case):
    flow, channels = flow_case
    x, cond = make_input(channels, batch=3)
    with torch.no_grad():
        check_batch_consistency(flow, x, cond)


def test_bfloat16_input_keeps_float32_logdet():
    flow = affine(4).eval()
    x, cond = make_input(4)
    with torch.no_grad():
        y, logdet = flow.to(torch.bfloat16)(x.bfloat16(), cond.bfloat16())
    assert y.dtype == torch.bfloat16
    assert logdet.dtype == torch.float32


def test_the_jacobian_check_catches_a_wrong_logdet():
    """Guard against a vacuous contract: a coupling whose log-det is off by a constant must fail."""

    class Wrong(AffineCoupling):
        def forward(self, x, cond=None):
            y, logdet = super().forward(x, cond)
            return y, logdet + 0.1

    flow = randomize_(Wrong(4, wavenet(2, 4)))
    x, cond = make_input(4, batch=1, length=4)
    with pytest.raises(AssertionError):
        check_jacobian(flow, x, cond)
