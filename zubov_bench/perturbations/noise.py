"""Shared plumbing of the stochastic noises: seed and sample indices of the call."""
from __future__ import annotations

from typing import ClassVar

import torch

from .base import Perturbation


class Noise(Perturbation):
    """Noise seeded by (generator seed, dataset index): independent of batch size and order.

    Without `index`, rows are numbered by their position in the batch.
    """

    threat: str = "noise"
    kind: ClassVar[str] = "noise"
    gradient_based: ClassVar[bool] = False
    iterative: ClassVar[bool] = False

    def perturb(self, model, x, y, severity, generator, index):
        if index is None:
            index = torch.arange(len(x))
        index = index.to(x.device)
        return self.apply(x, severity, generator.initial_seed(), index).clamp(0.0, 1.0).to(x.dtype)

    def apply(self, x: torch.Tensor, severity: float, seed: int, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
