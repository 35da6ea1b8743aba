from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import LINE_WIDTH, Corruption, fit_to, line_mask, mnist_canvas

TOOTH_LENGTH = 2.0  # MNIST-C's a: half the length of one zigzag period, in pixels of 28
TOOTH_HEIGHT = 2.0  # MNIST-C's b: the amplitude
FIRST_COLUMN, LAST_COLUMN = 2, 25


def zigzag_mask(rng: np.random.Generator) -> np.ndarray:
    """One zigzag on the 28x28 canvas, as MNIST-C's `zigzag` draws it: a row r0 uniform in
    0..26, a slope to r0 + (-5..4) over columns 2..25, teeth of length a and height b."""
    r0 = int(rng.integers(0, 27))
    r1 = r0 + int(rng.integers(-5, 5))
    theta = np.arctan((r1 - r0) / (LAST_COLUMN - FIRST_COLUMN))
    length = (LAST_COLUMN - FIRST_COLUMN) / np.cos(theta)
    points = [(0.0, 0.0)]
    tooth_row = 0.0
    for i in range(int((length - TOOTH_LENGTH) // (2 * TOOTH_LENGTH)) + 1):
        tooth_row = (-1) ** i * TOOTH_HEIGHT
        points.append(((2 * i + 1) * TOOTH_LENGTH, tooth_row))
    full = 2 * TOOTH_LENGTH * (length // (2 * TOOTH_LENGTH))
    if length != full:  # the reference's closing segment, kept as it is written there
        points.append((length, tooth_row / (2 * (length - full))))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cols, rows = rotation @ np.array(points).T
    cols, rows = cols + FIRST_COLUMN, rows + r0
    mask = np.zeros(mnist_canvas())
    for i in range(1, len(cols)):
        mask = (mask + line_mask(mnist_canvas(), cols[i - 1], rows[i - 1], cols[i], rows[i], LINE_WIDTH)).clip(0, 1)
    return mask


@register_perturbation("zigzag")
class Zigzag(Corruption):
    """Zigzag lines across the image: white zigzags added (clipped).

    MNIST-C's `zigzag` (Mu & Gilmer 2019, arXiv 1906.02337, code
    github.com/google-research/mnist-c) draws one zigzag and has no severity; ours is the number
    of independent zigzags, 1 to 5 (severity 1 is MNIST-C's). Drawn on a 28x28 canvas as there
    and resized to the image.
    """

    description = "MNIST-C zigzag (1..5 zigzag lines); severity 1..5"
    display_name = "Zigzag"
    levels = (1, 2, 3, 4, 5)
    mnist_c_severity = 1

    def corrupt(self, image, count, rng):
        for _ in range(count):
            image = (image + fit_to(zigzag_mask(rng), image)).clip(0.0, 1.0)
        return image
