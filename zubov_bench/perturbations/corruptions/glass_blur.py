from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import MNIST_SIZE, Corruption, pixels


@register_perturbation("glass-blur")
class GlassBlur(Corruption):
    """Glass blur: Gaussian blur, then pixels swapped with random neighbours, then blur again.

    MNIST-C's `glass_blur` (from ImageNet-C), levels (sigma, max displacement, iterations) =
    (0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2); MNIST-C uses severity 1.
    Mu & Gilmer 2019, arXiv 1906.02337, code github.com/google-research/mnist-c. As there, each
    visited pixel is swapped with probability 1/2 with the one displaced by (dx, dy) drawn from
    [-d, d) (the reference's `randint(-d, d)`). The reference's uint8 rounding between the steps
    is left out. Larger images scale sigma and d to their size; an image smaller than 28x28 (a
    shift by a whole pixel of an 8x8 image is most of a stroke, and every level would shift by
    one) is upsampled to 28x28, corrupted with MNIST-C's own parameters and downsampled back.
    """

    description = "MNIST-C glass blur (blur, local pixel shuffling, blur); severity 1..5"
    display_name = "Glass blur"
    levels = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
    mnist_c_severity = 1

    def corrupt(self, image, level, rng):
        from skimage.filters import gaussian
        from skimage.transform import resize

        h, w = image.shape[:2]
        if max(h, w) < MNIST_SIZE:
            large = resize(image, (MNIST_SIZE, MNIST_SIZE, image.shape[2]), order=1, mode="edge")
            return resize(self.corrupt(large, level, rng), image.shape, order=1, mode="edge", anti_aliasing=True)
        sigma, delta, iterations = level
        sigma = pixels(image, sigma)
        delta = max(1, round(pixels(image, delta)))
        image = gaussian(image, sigma=sigma, channel_axis=2)
        # the swaps are sequential (a pixel may move twice), so they are a loop, as in the
        # reference, over a list of pixels (list swaps are far cheaper than numpy indexing)
        pixels_flat = list(image.reshape(h * w, -1))
        visits = [(row, col) for row in range(h - delta, delta, -1) for col in range(w - delta, delta, -1)]
        for _ in range(iterations):
            swap = rng.random(len(visits)) < 0.5
            moves = rng.integers(-delta, delta, size=(len(visits), 2)).tolist()
            for (row, col), chosen, (dx, dy) in zip(visits, swap.tolist(), moves):
                if chosen:
                    a, b = row * w + col, (row + dy) * w + col + dx
                    pixels_flat[a], pixels_flat[b] = pixels_flat[b], pixels_flat[a]
        image = np.stack(pixels_flat).reshape(h, w, -1)
        return gaussian(image, sigma=sigma, channel_axis=2)
