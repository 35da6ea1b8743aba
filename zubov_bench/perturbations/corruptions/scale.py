from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import Corruption, warp_centred


@register_perturbation("scale")
class Scale(Corruption):
    """Shrink about the image centre by a factor f (the image is zoomed out, zero borders).

    MNIST-C's `scale`: skimage `AffineTransform(scale=1/f)` as inverse map, centre kept fixed,
    levels f = 0.9, 0.8, 0.7, 0.6, 0.5; MNIST-C uses severity 3 (Mu & Gilmer 2019,
    arXiv 1906.02337, code github.com/google-research/mnist-c). Deterministic.
    """

    description = "MNIST-C scale (shrink about the centre); severity 1..5"
    display_name = "Scale"
    levels = (0.9, 0.8, 0.7, 0.6, 0.5)
    mnist_c_severity = 3

    def corrupt(self, image, factor, rng):
        return warp_centred(image, np.eye(2) / factor)
