from __future__ import annotations

from ..registry import register_perturbation
from .base import Corruption


@register_perturbation("impulse-noise")
class ImpulseNoise(Corruption):
    """Impulse (salt-and-pepper) noise: a fraction `amount` of the values is set to 0 or 1, half each.

    MNIST-C's `impulse_noise` (skimage `random_noise(mode='s&p', amount=c)`), levels
    amount = 0.03, 0.06, 0.09, 0.17, 0.27 (MNIST-C uses severity 4); Mu & Gilmer 2019,
    arXiv 1906.02337, code github.com/google-research/mnist-c. Per channel value, as skimage.
    """

    description = "MNIST-C impulse (salt-and-pepper) noise; severity 1..5"
    display_name = "Impulse noise"
    levels = (0.03, 0.06, 0.09, 0.17, 0.27)
    mnist_c_severity = 4

    def corrupt(self, image, amount, rng):
        hit = rng.random(image.shape) < amount
        salt = rng.random(image.shape) < 0.5
        image[hit] = salt[hit].astype(float)
        return image
