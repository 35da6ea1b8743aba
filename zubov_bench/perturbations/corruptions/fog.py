from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import Corruption, fit_to

FRACTAL_SIZE = 256  # the reference draws a 256x256 plasma map and keeps its 28x28 corner


def plasma_fractal(rng: np.random.Generator, decay: float, size: int = FRACTAL_SIZE) -> np.ndarray:
    """A diamond-square height map in [0, 1] (`plasma_fractal` of ImageNet-C and MNIST-C)."""
    heights = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled_mean(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = heights[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        heights[half:size:step, half:size:step] = wibbled_mean(squares)
        centres = heights[half:size:step, half:size:step]
        corners = heights[0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        heights[0:size:step, half:size:step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        heights[half:size:step, 0:size:step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    heights -= heights.min()
    return heights / heights.max()


@register_perturbation("fog")
class Fog(Corruption):
    """Fog: a plasma-fractal haze of strength c is added and the result renormalised.

    MNIST-C's `fog` (from ImageNet-C): x + c · plasma[:28, :28], scaled by max(x) / (max(x) + c),
    levels (c, wibble decay) = (1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4); MNIST-C uses
    severity 5 (Mu & Gilmer 2019, arXiv 1906.02337, code github.com/google-research/mnist-c).
    The haze is drawn on the reference's 28x28 crop and resized to the image (the same haze on
    every channel).
    """

    description = "MNIST-C fog (plasma-fractal haze); severity 1..5"
    display_name = "Fog"
    levels = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
    mnist_c_severity = 5

    def corrupt(self, image, level, rng):
        strength, decay = level
        peak = image.max()
        haze = fit_to(plasma_fractal(rng, decay)[:28, :28], image)
        return (image + strength * haze) * peak / (peak + strength)
