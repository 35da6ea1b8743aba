from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import Corruption, warp_centred


@register_perturbation("rotate")
class Rotate(Corruption):
    """Rotation about the image centre by ±c radians (random sign).

    MNIST-C's `rotate`: skimage `AffineTransform(rotation=c)` as inverse map, centre kept fixed,
    levels c = 0.2, 0.4, 0.6, 0.8, 1.0 rad; MNIST-C uses severity 2 (Mu & Gilmer 2019,
    arXiv 1906.02337, code github.com/google-research/mnist-c).
    """

    description = "MNIST-C rotation about the centre (random direction); severity 1..5"
    display_name = "Rotate"
    levels = (0.2, 0.4, 0.6, 0.8, 1.0)
    mnist_c_severity = 2

    def corrupt(self, image, angle, rng):
        angle *= rng.choice([-1.0, 1.0])
        cos, sin = np.cos(angle), np.sin(angle)
        return warp_centred(image, np.array([[cos, -sin], [sin, cos]]))
