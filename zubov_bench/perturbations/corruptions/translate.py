from __future__ import annotations

from ..registry import register_perturbation
from .base import Corruption, pixels, warp_centred
import numpy as np


@register_perturbation("translate")
class Translate(Corruption):
    """Shift by c pixels horizontally and c vertically, each in a random direction (zero borders).

    MNIST-C's `translate`: skimage `AffineTransform(translation=(±c, ±c))` as inverse map, levels
    c = 1, 2, 3, 4, 5 pixels of a 28x28 image; MNIST-C uses severity 3 (Mu & Gilmer 2019,
    arXiv 1906.02337, code github.com/google-research/mnist-c). c is scaled to the image size
    (a fractional shift is bilinear).
    """

    description = "MNIST-C translation (random diagonal direction); severity 1..5"
    display_name = "Translate"
    levels = (1, 2, 3, 4, 5)
    mnist_c_severity = 3

    def corrupt(self, image, shift, rng):
        signs = rng.choice([-1.0, 1.0], size=2)
        return warp_centred(image, np.eye(2), pixels(image, shift) * signs)
