from __future__ import annotations

import math

import numpy as np

from ..registry import register_perturbation
from .base import Corruption, pixels


@register_perturbation("motion-blur")
class MotionBlur(Corruption):
    """Motion blur: each pixel averages the pixels behind it along a random direction.

    MNIST-C's `motion_blur` calls ImageMagick's MotionBlurImage(radius, sigma, angle) with levels
    (radius, sigma) = (10, 3), (15, 5), (15, 8), (15, 12), (20, 15) and an angle uniform in
    [-45°, 45°]; MNIST-C uses severity 1 (Mu & Gilmer 2019, arXiv 1906.02337, code
    github.com/google-research/mnist-c). ImageMagick's kernel, rebuilt here with numpy and
    scipy: weights exp(-i² / 2σ²) for i = 0 .. 2·radius, normalised, on the pixels at distance i
    along the angle (one-sided), read bilinearly with edge values repeated. Radius and sigma are
    scaled to the image size.
    """

    description = "MNIST-C motion blur (one-sided Gaussian streak at a random angle); severity 1..5"
    display_name = "Motion blur"
    levels = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
    mnist_c_severity = 1

    def corrupt(self, image, level, rng):
        from scipy.ndimage import map_coordinates

        radius, sigma = pixels(image, level[0]), pixels(image, level[1])
        angle = math.radians(rng.uniform(-45.0, 45.0))
        steps = np.arange(2 * math.ceil(radius) + 1, dtype=float)
        weights = np.exp(-steps**2 / (2 * sigma**2))
        weights /= weights.sum()
        h, w = image.shape[:2]
        rows, cols = np.mgrid[0:h, 0:w].astype(float)
        out = np.zeros_like(image)
        for step, weight in zip(steps, weights):
            coords = [rows - step * math.sin(angle), cols + step * math.cos(angle)]
            for c in range(image.shape[2]):
                out[:, :, c] += weight * map_coordinates(image[:, :, c], coords, order=1, mode="nearest")
        return out
