from __future__ import annotations

from ..registry import register_perturbation
from .base import Corruption


@register_perturbation("brightness")
class Brightness(Corruption):
    """Brightness: c is added to the value channel in HSV space.

    MNIST-C's `brightness` (from ImageNet-C): grey -> RGB -> HSV, V + c, back, levels
    c = 0.1, 0.2, 0.3, 0.4, 0.5; MNIST-C uses severity 5 (Mu & Gilmer 2019, arXiv 1906.02337,
    code github.com/google-research/mnist-c). For a grey image that round trip is exactly
    min(x + c, 1), computed directly; an RGB image goes through HSV as in ImageNet-C.
    Deterministic.
    """

    description = "MNIST-C brightness (HSV value + c); severity 1..5"
    display_name = "Brightness"
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)
    mnist_c_severity = 5

    def corrupt(self, image, shift, rng):
        if image.shape[2] == 1:
            return image + shift
        from skimage.color import hsv2rgb, rgb2hsv

        hsv = rgb2hsv(image)
        hsv[:, :, 2] = (hsv[:, :, 2] + shift).clip(0.0, 1.0)
        return hsv2rgb(hsv)
