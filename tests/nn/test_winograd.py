"""Winograd F(2, 3) and F(4, 3) dilated convolution: the same map as ``F.conv1d`` (forward and backward)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import randomize_
from waveflow.nn import WaveNet
from waveflow.nn.winograd import dilated_conv3

CASES = [  # (batch, in, out, T, dilation)
    (1, 5, 7, 40, 1),
    (2, 3, 4, 37, 2),  # T not a multiple of the 2d block
    (3, 4, 6, 16, 8),  # exactly one block
    (1, 2, 3, 5, 16),  # T < d: every tap but the centre falls in the padding
    (2, 6, 5, 1, 4),  # a single sample
    (1, 8, 8, 130, 64),
]


@pytest.mark.parametrize(("batch", "c_in", "c_out", "t", "d"), CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tile", [2, 4])
def test_equals_conv1d_in_float64(batch, c_in, c_out, t, d, bias, tile):
    gen = torch.Generator().manual_seed(batch * 1000 + t + d)
    x = torch.randn(batch, c_in, t, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(c_out, c_in, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    grad = torch.randn(batch, c_out, t, dtype=torch.float64, generator=gen)
    ref = F.conv1d(x, w, b, padding=d, dilation=d)
    out = dilated_conv3(x, w, b, d, tile=tile)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    inputs = [x, w] + ([b] if bias else [])
    ref_grads = torch.autograd.grad(ref, inputs, grad)
    grads = torch.autograd.grad(out, inputs, grad)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("tile", [2, 4])
def test_gradcheck(tile):
    x = torch.randn(2, 3, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: dilated_conv3(x, w, b, 2, tile=tile), (x, w, b))


@pytest.mark.parametrize("tile", [2, 4])
def test_float32_at_model_size_and_a_strided_gradient(tile):
    """NVIDIA's layer shape in float32: rounding-level differences only, also when the incoming
    gradient is not contiguous (the output is used through a transpose)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 256, 500, generator=gen, requires_grad=True)
    w = (torch.randn(512, 256, 3, generator=gen) / 30).requires_grad_()
    b = torch.randn(512, generator=gen, requires_grad=True)
    target = torch.randn(500, 512, generator=gen)
    ref = F.conv1d(x, w, b, padding=32, dilation=32)
    out = dilated_conv3(x, w, b, 32, tile=tile)
    torch.testing.assert_close(out, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)
    ref_grads = torch.autograd.grad((ref[0].t() * target).sum(), [x, w, b])
    grads = torch.autograd.grad((out[0].t() * target).sum(), [x, w, b])
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5 * float(r.abs().max()), rtol=0)


def test_only_requested_gradients_are_computed():
    x = torch.randn(1, 3, 9)
    w = torch.randn(4, 3, 3, requires_grad=True)
    (gw,) = torch.autograd.grad(dilated_conv3(x, w, None, 2).sum(), [w])
    (ref,) = torch.autograd.grad(F.conv1d(x, w, None, padding=2, dilation=2).sum(), [w])
    torch.testing.assert_close(gw, ref, atol=1e-5, rtol=1e-5)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="kernel of 3|\\(O, C, 3\\)"):
        dilated_conv3(torch.randn(1, 3, 9), torch.randn(4, 3, 5), None, 2)
    with pytest.raises(ValueError, match="expects x of shape"):
        dilated_conv3(torch.randn(1, 2, 9), torch.randn(4, 3, 3), None, 2)
    with pytest.raises(ValueError, match="dilation"):
        dilated_conv3(torch.randn(1, 3, 9), torch.randn(4, 3, 3), None, 0)
    with pytest.raises(ValueError, match="tile must be one of"):
        dilated_conv3(torch.randn(1, 3, 9), torch.randn(4, 3, 3), None, 2, tile=3)


@pytest.mark.parametrize("weight_norm", [True, False])
def test_wavenet_with_and_without_winograd(weight_norm):
    """Every layer with dilation >= 1 through F(4, 3) against every layer through F.conv1d: the
    output and every parameter's gradient agree (float64, short sequence so padding matters)."""
    torch.manual_seed(1)
    net = WaveNet(2, 4, 6, n_layers=5, n_channels=8, weight_norm=weight_norm)
    randomize_(net, 0.3)
    net = net.double()
    x = torch.randn(2, 2, 21, dtype=torch.float64)
    cond = torch.randn(2, 6, 21, dtype=torch.float64)
    results = []
    for min_dilation in (None, 1):
        net.winograd_min_dilation = min_dilation
        out = net(x, cond)
        results.append((out, torch.autograd.grad(out.square().sum(), list(net.parameters()))))
    (ref, ref_grads), (out, grads) = results
    assert not torch.equal(out, ref)  # the two paths really differ in arithmetic
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


def test_wavenet_uses_winograd_only_for_kernel_3():
    assert WaveNet(2, 4, 6, n_layers=3, n_channels=8, kernel_size=3).winograd_min_dilation is not None
    assert WaveNet(2, 4, 6, n_layers=3, n_channels=8, kernel_size=5).winograd_min_dilation is None
