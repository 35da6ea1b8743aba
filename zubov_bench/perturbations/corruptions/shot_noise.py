from __future__ import annotations

from ..registry import register_perturbation
from .base import Corruption


@register_perturbation("shot-noise")
class ShotNoise(Corruption):
    """Shot (Poisson) noise: each value becomes Poisson(x * c) / c, so fewer photons c is noisier.

    Definition and the five levels c = 60, 25, 12, 5, 3 from `shot_noise` in MNIST-C's
    corruptions.py (github.com/google-research/mnist-c; Mu & Gilmer 2019, arXiv 1906.02337),
    itself ImageNet-C's (Hendrycks & Dietterich 2019). MNIST-C uses severity 5. Per channel.
    """

    description = "MNIST-C shot (Poisson) noise; severity 1..5"
    display_name = "Shot noise"
    levels = (60, 25, 12, 5, 3)
    mnist_c_severity = 5

    def corrupt(self, image, photons, rng):
        return rng.poisson(image * photons) / photons
