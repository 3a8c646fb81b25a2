"""Invertible 1x1 convolutions: a learned channel mixing applied at every time step.

Two parameterisations:

* :class:`InvertibleConv1x1` keeps a dense ``(C, C)`` weight, as NVIDIA's WaveGlow does, so its
  checkpoints map onto it one to one. It is initialised to a random rotation (orthogonal, det +1).
* :class:`LUInvertibleConv1x1` is Glow's LU form ``W = P L (U + diag(sign * exp(log_s)))``: the
  log-determinant is simply ``sum(log_s)`` and the matrix can never become singular.

Determinants and inverses are computed in float64 and cast back: in float32 the inverse of a
trained 8x8 matrix loses several digits, which shows up as audible error after twelve flows.
Inference caches the inverse explicitly (see :meth:`_Conv1x1.inverse_weight`); the cache is dropped
whenever the module is put in training mode, loads a state dict, or sees its weight change.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from waveflow.flows.base import Flow, logdet_dtype


def random_rotation(num_channels: int, generator: torch.Generator | None = None) -> Tensor:
    """A random orthogonal ``(C, C)`` matrix with determinant +1 (QR of a Gaussian matrix)."""
    a = torch.randn(num_channels, num_channels, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(a)
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]  # flip one axis: a reflection would make log|det| fine but NVIDIA's logdet NaN
    return q.float()


class _Conv1x1(Flow):
    """Shared machinery: apply ``W`` per time step, log-det ``T * log|det W|``, cached inverse."""

    def __init__(self, num_channels: int):
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}")
        self.num_channels = num_channels
        self._inverse_cache: tuple[tuple, Tensor] | None = None
        self._logdet_cache: tuple[tuple, Tensor] | None = None

    # -- parameterisation ---------------------------------------------------------------------
    def weight_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """The ``(C, C)`` matrix ``W`` (in ``dtype`` if given)."""
        raise NotImplementedError

    def log_abs_det(self) -> Tensor:
        """``log |det W|`` as a float64 scalar."""
        raise NotImplementedError

    # -- inverse cache ------------------------------------------------------------------------
    def _cache_key(self, dtype: torch.dtype, device: torch.device) -> tuple:
        versions = tuple(p._version for p in self.parameters())
        return (dtype, device, versions)

    def clear_cache(self) -> None:
        self._inverse_cache = None
        self._logdet_cache = None

    def train(self, mode: bool = True):
        self.clear_cache()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self.clear_cache()
        super()._load_from_state_dict(*args, **kwargs)

    def inverse_weight(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``W^-1`` computed in float64 and cast to ``dtype``.

        Cached only in eval mode and when no gradient is needed; the cache key includes the
        parameters' version counters, so an in-place update of the weight invalidates it.
        """
        use_cache = not self.training and not torch.is_grad_enabled()
        if use_cache and self._inverse_cache is not None:
            key, w_inv = self._inverse_cache
            if key == self._cache_key(dtype, device):
                return w_inv
        w_inv = torch.linalg.inv(self.weight_matrix(torch.float64)).to(device=device, dtype=dtype)
        if use_cache:
            self._inverse_cache = (self._cache_key(dtype, device), w_inv)
        return w_inv

    def _cached_log_abs_det(self) -> Tensor:
        """:meth:`log_abs_det`, cached under the same conditions as the inverse (an LU
        factorisation per call is ~10% of a compact model's synthesis)."""
        if self.training or torch.is_grad_enabled():
            return self.log_abs_det()
        key = self._cache_key(torch.float64, torch.device("cpu"))
        if self._logdet_cache is None or self._logdet_cache[0] != key:
            self._logdet_cache = (key, self.log_abs_det())
        return self._logdet_cache[1]

    # -- flow ------------------------------------------------------------------------------
    def _logdet(self, x: Tensor) -> Tensor:
        # (B,): every one of the T time steps contributes log|det W|.
        ld = self._cached_log_abs_det().to(logdet_dtype(x)) * x.shape[-1]
        return ld.expand(x.shape[0]).to(x.device)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.num_channels}, T), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        w = self.weight_matrix(x.dtype)
        return torch.matmul(w, x), self._logdet(x)  # (C, C) @ (B, C, T) -> (B, C, T)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        w_inv = self.inverse_weight(y.dtype, y.device)
        return torch.matmul(w_inv, y), -self._logdet(y)


class InvertibleConv1x1(_Conv1x1):
    """Dense invertible 1x1 convolution (WaveGlow); ``weight`` is ``(C, C)``."""

    def __init__(self, num_channels: int):
        super().__init__(num_channels)
        self.weight = nn.Parameter(random_rotation(num_channels))

    def weight_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        return self.weight if dtype is None else self.weight.to(dtype)

    def log_abs_det(self) -> Tensor:
        return torch.linalg.slogdet(self.weight.double())[1]


class LUInvertibleConv1x1(_Conv1x1):
    """Glow's LU-decomposed invertible 1x1 convolution.

    ``W = P @ (L + I) @ (U + diag(sign_s * exp(log_s)))`` with ``P`` a fixed permutation, ``L``
    strictly lower and ``U`` strictly upper triangular. Initialised from a random rotation, so at
    initialisation it equals an orthogonal matrix with det +1.
    """

    def __init__(self, num_channels: int):
        super().__init__(num_channels)
        w = random_rotation(num_channels).double()
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(num_channels, num_channels), -1))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def weight_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or self.lower.dtype
        eye = torch.eye(self.num_channels, dtype=dtype, device=self.lower.device)
        mask = self.lower_mask.to(dtype)
        lower = self.lower.to(dtype) * mask + eye
        upper = self.upper.to(dtype) * mask.T + torch.diag(
            self.sign_s.to(dtype) * torch.exp(self.log_s.to(dtype))
        )
        return self.permutation.to(dtype) @ lower @ upper

    def log_abs_det(self) -> Tensor:
        return self.log_s.double().sum()
