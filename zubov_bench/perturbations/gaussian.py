from __future__ import annotations

from .counter_rng import normals
from .noise import Noise
from .registry import register_perturbation


@register_perturbation("gaussian")
class Gaussian(Noise):
    description = "additive Gaussian noise N(0, sigma^2) per element, clipped to [0, 1]; severity sigma"
    display_name = "Gaussian"
    severity_symbol = "σ"
    noise_grid = (0.05, 0.1, 0.2, 0.3)

    def apply(self, x, severity, seed, index):
        return x + severity * normals(seed, index, tuple(x.shape[1:])).to(x.dtype)
