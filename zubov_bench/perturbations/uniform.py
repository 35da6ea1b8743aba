from __future__ import annotations

from .counter_rng import uniforms
from .noise import Noise
from .registry import register_perturbation


@register_perturbation("uniform")
class Uniform(Noise):
    description = "additive uniform noise on [-a, a] per element, clipped to [0, 1]; severity a"
    display_name = "Uniform"
    severity_symbol = "a"
    noise_grid = (0.1, 0.2, 0.3)

    def apply(self, x, severity, seed, index):
        u = uniforms(seed, index, tuple(x.shape[1:]), stream=0).to(x.dtype)
        return x + severity * (2.0 * u - 1.0)
