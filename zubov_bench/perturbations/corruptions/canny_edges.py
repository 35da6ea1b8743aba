from __future__ import annotations

from ..registry import register_perturbation
from .base import Corruption, luminance, pixels


@register_perturbation("canny-edges")
class CannyEdges(Corruption):
    """Canny edges: the image is replaced by (blended towards) its binary Canny edge map.

    MNIST-C's `canny_edges` (Mu & Gilmer 2019, arXiv 1906.02337, code
    github.com/google-research/mnist-c) replaces the image by skimage `feature.canny(x)` (sigma 1)
    and has no severity. Ours blends, (1 - a) x + a · edges with a = 0.2, 0.4, 0.6, 0.8, 1, so
    severity 5 is MNIST-C's. The edges are those of the grey levels (luma for RGB), with sigma
    scaled to the image size, on every channel. Deterministic.
    """

    description = "MNIST-C Canny edges (image blended towards its edge map); severity 1..5"
    display_name = "Canny edges"
    levels = (0.2, 0.4, 0.6, 0.8, 1.0)
    mnist_c_severity = 5

    def corrupt(self, image, weight, rng):
        from skimage.feature import canny

        edges = canny(luminance(image), sigma=pixels(image, 1.0)).astype(float)[:, :, None]
        return (1.0 - weight) * image + weight * edges
