from __future__ import annotations

import torch

from .counter_rng import uniforms
from .noise import Noise
from .registry import register_perturbation


@register_perturbation("salt-pepper")
class SaltPepper(Noise):
    description = "salt-and-pepper: a fraction p of pixels set to 0 or 1 (half each); severity p"
    display_name = "Salt & pepper"
    severity_symbol = "p"
    noise_grid = (0.05, 0.1, 0.2)
    max_severity = 1.0

    def apply(self, x, severity, seed, index):
        # images: a pixel is hit in all its channels at once; vectors: per coordinate
        shape = (1, *x.shape[2:]) if x.dim() == 4 else tuple(x.shape[1:])
        hit = uniforms(seed, index, shape, stream=2) < severity
        salt = uniforms(seed, index, shape, stream=3) < 0.5
        value = salt.to(x.dtype).expand_as(x)
        return torch.where(hit.expand_as(x), value, x)
