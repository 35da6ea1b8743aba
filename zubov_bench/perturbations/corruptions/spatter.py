from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import Corruption, fit_to, mnist_canvas

MUD = 63 / 255  # the grey of MNIST-C's mud


@register_perturbation("spatter")
class Spatter(Corruption):
    """Spatter: blobs of grey mud (63/255) cover parts of the image.

    MNIST-C's `spatter` (the mud branch of ImageNet-C's): a normal field N(loc, scale) blurred
    with sigma s1 and thresholded at t gives blob seeds, blurred again with sigma s2; where that
    mask m is at least 0.8 the image becomes x (1 - m) + 63/255 · m. The reference's levels
    (loc, scale, s1, t, s2) are (0.65, 0.3, 4, 0.69, 0.6), (0.65, 0.3, 3, 0.68, 0.6),
    (0.65, 0.3, 2, 0.68, 0.5), (0.65, 0.3, 1, 0.65, 1.5), (0.67, 0.4, 1, 0.65, 1.5), and MNIST-C
    uses its level 4 (Mu & Gilmer 2019, arXiv 1906.02337, code github.com/google-research/mnist-c).
    Its levels 4 and 5 switch to finer blobs that cover less of the image, so by the distance
    they cause they are not in order; our severities 1..5 are its levels 1, 4, 2, 5, 3 (measured
    on digits and FashionMNIST), which makes MNIST-C's choice our severity 2. The mask is drawn
    on a 28x28 canvas, as there, and resized to the image (the same mask on every channel).
    """

    description = "MNIST-C spatter (grey mud blobs); severity 1..5"
    display_name = "Spatter"
    levels = ((0.65, 0.3, 4, 0.69, 0.6), (0.65, 0.3, 1, 0.65, 1.5), (0.65, 0.3, 3, 0.68, 0.6),
              (0.67, 0.4, 1, 0.65, 1.5), (0.65, 0.3, 2, 0.68, 0.5))
    mnist_c_severity = 2

    def corrupt(self, image, level, rng):
        from skimage.filters import gaussian

        loc, scale, blur, threshold, spread = level
        liquid = gaussian(rng.normal(loc, scale, size=mnist_canvas()), sigma=blur)
        mask = gaussian((liquid > threshold).astype(float), sigma=spread)
        mask[mask < 0.8] = 0.0
        mask = fit_to(mask, image)
        return image * (1.0 - mask) + MUD * mask
