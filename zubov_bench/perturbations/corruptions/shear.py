from __future__ import annotations

import numpy as np

from ..registry import register_perturbation
from .base import Corruption, warp_centred


@register_perturbation("shear")
class Shear(Corruption):
    """Shear about the image centre by an angle of ±c radians (random sign).

    MNIST-C's `shear`: skimage `AffineTransform(shear=c)` as inverse map, centre kept fixed,
    levels c = 0.2, 0.4, 0.6, 0.8, 1.0; MNIST-C uses severity 2 (Mu & Gilmer 2019,
    arXiv 1906.02337, code github.com/google-research/mnist-c). The matrix is written out as the
    skimage of 2019 built it, [[1, -sin c], [0, cos c]], since newer skimage defines `shear`
    differently.
    """

    description = "MNIST-C shear about the centre (random direction); severity 1..5"
    display_name = "Shear"
    levels = (0.2, 0.4, 0.6, 0.8, 1.0)
    mnist_c_severity = 2

    def corrupt(self, image, angle, rng):
        angle *= rng.choice([-1.0, 1.0])
        return warp_centred(image, np.array([[1.0, -np.sin(angle)], [0.0, np.cos(angle)]]))
