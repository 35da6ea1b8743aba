from __future__ import annotations

from ..registry import register_perturbation
from .base import MNIST_SIZE, Corruption


@register_perturbation("stripe")
class Stripe(Corruption):
    """Stripe: the leftmost and rightmost bands of columns are inverted (x -> 1 - x).

    MNIST-C's `stripe` (Mu & Gilmer 2019, arXiv 1906.02337, code github.com/google-research/mnist-c)
    has no severity: it inverts 7 of 28 columns on each side. Our ladder widens the bands,
    1, 3, 5, 7 and 9 columns of 28 on each side, so severity 4 is MNIST-C's. On other widths the
    band is scaled and a fractional column is blended, x + f (1 - 2x), so that every level differs
    even on 8 columns. Deterministic.
    """

    description = "MNIST-C stripe (inverted bands at the left and right edges); severity 1..5"
    display_name = "Stripe"
    levels = (1, 3, 5, 7, 9)
    mnist_c_severity = 4

    def corrupt(self, image, columns, rng):
        width = image.shape[1]
        band = min(columns * width / MNIST_SIZE, width / 2)
        full, part = int(band), band - int(band)
        inverted = 1.0 - image
        image[:, :full], image[:, width - full:] = inverted[:, :full], inverted[:, width - full:]
        if part > 0:
            for col in (full, width - 1 - full):
                image[:, col] += part * (1.0 - 2.0 * image[:, col])
        return image
