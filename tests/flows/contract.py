"""The flow contract, checked the same way for every Flow (see waveflow/flows/base.py)."""

from __future__ import annotations

import torch
from torch import Tensor

from waveflow.flows import Flow


def check_round_trip(flow: Flow, x: Tensor, cond: Tensor | None, atol: float = 1e-5) -> None:
    y, logdet = flow(x, cond)
    x_back, logdet_inv = flow.inverse(y, cond)
    assert x_back.shape == x.shape
    err = (x_back - x).abs().max().item()
    assert err <= atol, f"round trip error {err:.3g} > {atol}"
    assert logdet.shape == (x.shape[0],)
    assert logdet_inv.shape == (x.shape[0],)
    torch.testing.assert_close(logdet_inv, -logdet, rtol=1e-5, atol=1e-4)


def check_logdet_dtype(flow: Flow, x: Tensor, cond: Tensor | None) -> None:
    y, logdet = flow(x, cond)
    assert logdet.dtype == torch.promote_types(x.dtype, torch.float32)
    assert logdet.device == x.device
    _, logdet_inv = flow.inverse(y, cond)
    assert logdet_inv.dtype == logdet.dtype


def jacobian_logdet(fn, x: Tensor) -> Tensor:
    """``log|det J|`` of ``fn`` at ``x`` (batch of one), from the dense autograd Jacobian, float64."""
    assert x.shape[0] == 1 and x.dtype == torch.float64
    flat = x.reshape(-1)

    def f(v: Tensor) -> Tensor:
        return fn(v.reshape(x.shape)).reshape(-1)

    jac = torch.autograd.functional.jacobian(f, flat)  # (N_out, N_in)
    assert jac.shape[0] == jac.shape[1], f"flow is not dimension preserving: {tuple(jac.shape)}"
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0, "Jacobian is singular"
    return logabsdet


def check_jacobian(flow: Flow, x: Tensor, cond: Tensor | None) -> None:
    """Analytic log-det (both directions) vs the autograd Jacobian, in float64 on a tiny input."""
    flow = flow.double()
    x = x.double()
    cond = None if cond is None else cond.double()
    y, logdet = flow(x, cond)
    expected = jacobian_logdet(lambda v: flow(v, cond)[0], x)
    torch.testing.assert_close(logdet[0], expected, rtol=1e-7, atol=1e-8)
    _, logdet_inv = flow.inverse(y, cond)
    expected_inv = jacobian_logdet(lambda v: flow.inverse(v, cond)[0], y.detach())
    torch.testing.assert_close(logdet_inv[0], expected_inv, rtol=1e-7, atol=1e-8)


def check_batch_consistency(flow: Flow, x: Tensor, cond: Tensor | None) -> None:
    y, logdet = flow(x, cond)
    for i in range(x.shape[0]):
        ci = None if cond is None else cond[i : i + 1]
        yi, ldi = flow(x[i : i + 1], ci)
        torch.testing.assert_close(yi, y[i : i + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ldi, logdet[i : i + 1], rtol=1e-5, atol=1e-5)
