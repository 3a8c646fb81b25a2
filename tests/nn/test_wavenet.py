"""The WaveNet conditioner: receptive field measured with a gradient probe, weight-norm folding."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import randomize_
from waveflow.nn import MelUpsampler, WaveNet, gated_activation


def support(grad: torch.Tensor, rel: float = 0.0) -> tuple[int, int]:
    """First and last time index where ``grad`` is nonzero (above ``rel`` x its largest magnitude)."""
    mass = grad.abs().sum(dim=tuple(range(grad.dim() - 1)))
    idx = torch.nonzero(mass > rel * mass.max()).flatten()
    return int(idx.min()), int(idx.max())


@pytest.mark.parametrize(
    "n_layers,kernel_size,winograd",
    [(1, 3, False), (3, 3, False), (4, 5, False), (1, 3, True), (3, 3, True)],  # Winograd: kernel 3 only
)
def test_receptive_field_matches_gradient_probe(n_layers, kernel_size, winograd):
    """Direct convolutions: the gradient is exactly zero outside the receptive field. Winograd
    F(4, 3) mixes a tile's 6 inputs into its 4 outputs with coefficients that cancel only up to
    rounding, so there the gradient outside is rounding noise (< 1e-6 of its largest value)."""
    net = randomize_(WaveNet(2, 4, 3, n_layers=n_layers, n_channels=8, kernel_size=kernel_size)).double()
    assert (net.winograd_min_dilation is not None) == (kernel_size == 3)
    if not winograd:
        net.winograd_min_dilation = None
    rel = 1e-6 if winograd else 0.0
    length = 4 * net.receptive_field
    x = torch.randn(1, 2, length, dtype=torch.float64, requires_grad=True)
    cond = torch.randn(1, 3, length, dtype=torch.float64, requires_grad=True)
    centre = length // 2
    net(x, cond)[0, :, centre].sum().backward()
    lo, hi = support(x.grad, rel)
    assert (lo, hi) == (centre - net.context, centre + net.context)
    assert hi - lo + 1 == net.receptive_field
    # The conditioning enters layer i after its dilated conv, so it skips layer 0's reach.
    cond_context = net.context - (kernel_size - 1) // 2
    assert support(cond.grad, rel) == (centre - cond_context, centre + cond_context)


def test_remove_weight_norm_keeps_outputs():
    net = randomize_(WaveNet(2, 4, 3, n_layers=3, n_channels=8))
    x, cond = torch.randn(2, 2, 20), torch.randn(2, 3, 20)
    with torch.no_grad():
        before = net(x, cond)
        n_before = sum(p.numel() for p in net.parameters())
        net.remove_weight_norm()
        after = net(x, cond)
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-6)
    assert sum(p.numel() for p in net.parameters()) < n_before  # the g vectors are gone


def test_wavenet_rejects_mismatched_cond():
    net = WaveNet(2, 4, 3, n_layers=2, n_channels=8)
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(1, 2, 10), torch.randn(1, 3, 11))


@pytest.mark.parametrize("frames", [1, 2, 7])
def test_upsampler_length_rule(frames):
    up = MelUpsampler(n_mels=5, hop_length=16, kernel_size=64)
    mel = torch.randn(2, 5, frames)
    assert up(mel).shape == (2, 5, frames * 16)
    assert up.output_length(frames) == 16 * (frames - 1) + 64
    assert up(mel, up.output_length(frames)).shape[-1] == 16 * (frames - 1) + 64
    with pytest.raises(ValueError, match="cover at most"):
        up(mel, up.output_length(frames) + 1)


def _layer_by_layer(net: WaveNet, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """NVIDIA's WN computation, written out: every conv applied as it stands, no folding."""
    c = net.n_channels
    h = net.start(x)
    conds = net.cond_layer(cond)
    skip = 0
    for i in range(net.n_layers):
        a = net.in_layers[i](h) + conds[:, 2 * c * i : 2 * c * (i + 1)]
        r = net.res_skip_layers[i](torch.tanh(a[:, :c]) * torch.sigmoid(a[:, c:]))
        if i < net.n_layers - 1:
            h = h + r[:, :c]
            skip = skip + r[:, c:]
        else:
            skip = skip + r
    return net.end(skip)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "n_channels"),
    [(2, 4, 16), (16, 4, 16), (2, 16, 16), (20, 24, 16)],
    ids=["both-folds", "no-start-fold", "no-skip-fold", "no-folds"],
)
@pytest.mark.parametrize("weight_norm", [True, False])
def test_folded_forward_equals_the_layer_by_layer_computation(
    in_channels, out_channels, n_channels, weight_norm
):
    """The start/first-layer and skip/end folds change nothing but rounding: outputs and every
    parameter's gradient agree with the plain computation in float64, edges included."""
    torch.manual_seed(0)
    net = WaveNet(in_channels, out_channels, 6, n_layers=3, n_channels=n_channels, weight_norm=weight_norm)
    randomize_(net, 0.3)
    net = net.double()
    x = torch.randn(2, in_channels, 13, dtype=torch.float64)  # short: padding reaches every layer
    cond = torch.randn(2, 6, 13, dtype=torch.float64)
    out = net(x, cond)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    ref = _layer_by_layer(net, x, cond)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)
    net.fold_linear_maps = False  # the switches give the layer-by-layer computation itself
    net.winograd_min_dilation = None
    plain = net(x, cond)
    assert not torch.equal(plain, out)
    # Only the gate differs (tanh computed through sigmoid): rounding of float64.
    torch.testing.assert_close(plain, ref, atol=1e-14, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gated_activation_matches_tanh_times_sigmoid(dtype):
    """The hand-written gate (tanh via sigmoid, one gradient buffer) against autograd's own
    ``tanh(t) * sigmoid(s)``: values and input gradient, with extreme pre-activations included."""
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(2, 8, 50, generator=gen, dtype=dtype) * 4).requires_grad_()
    with torch.no_grad():
        a[0, :, :3] = torch.tensor([-60.0, 0.0, 60.0], dtype=dtype)
    grad = torch.randn(2, 4, 50, generator=gen, dtype=dtype)
    out = gated_activation(a, 4)
    ref = torch.tanh(a[:, :4]) * torch.sigmoid(a[:, 4:])
    tol = 1e-12 if dtype == torch.float64 else 3e-7
    torch.testing.assert_close(out, ref, atol=tol, rtol=0)
    (g,) = torch.autograd.grad(out, a, grad)
    (r,) = torch.autograd.grad(ref, a, grad)
    torch.testing.assert_close(g, r, atol=tol * 10, rtol=0)


def test_gated_activation_gradcheck_and_shape_error():
    a = torch.randn(1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: gated_activation(x, 3), (a,))
    with pytest.raises(ValueError, match="gated_activation expects"):
        gated_activation(torch.randn(1, 5, 7), 3)
