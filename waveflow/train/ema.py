"""An exponential moving average of a model's parameters (Polyak averaging).

``update`` after each optimizer step moves the average towards the current weights by
``1 - decay``, with the decay ramped up as ``min(decay, (1 + n) / (10 + n))`` over the first
updates so that the average does not remember the random initialisation for thousands of steps.
``applied`` swaps the average into the model for validation and saving, then swaps the training
weights back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class ExponentialMovingAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    def _params(self, model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(model.named_parameters())
        if params.keys() != self.shadow.keys():
            raise ValueError("the model's parameters differ from the averaged ones")
        for name, shadow in self.shadow.items():
            yield params[name], shadow

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for p, shadow in self._params(model):
            shadow.lerp_(p.detach(), 1 - decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the training ones come back after."""
        backup = []
        with torch.no_grad():
            for p, shadow in self._params(model):
                backup.append(p.detach().clone())
                p.copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for (p, _), saved in zip(self._params(model), backup):
                    p.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["shadow"].keys() != self.shadow.keys():
            raise ValueError("the saved average holds other parameters than the model")
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
        self.num_updates = int(state["num_updates"])
