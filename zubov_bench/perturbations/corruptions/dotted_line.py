from __future__ import annotations

from ..registry import register_perturbation
from .base import LINE_WIDTH, MNIST_SIZE, Corruption, fit_to, line_mask, mnist_canvas

DASH = 2  # MNIST-C's dashes and gaps, in columns of 28


@register_perturbation("dotted-line")
class DottedLine(Corruption):
    """Dotted lines across the image: white dashes added (clipped), from the left edge to the right.

    MNIST-C's `dotted_line` (Mu & Gilmer 2019, arXiv 1906.02337, code
    github.com/google-research/mnist-c) draws one line from (0, r0) to (27, r1), rows r0, r1
    uniform in 0..26, with every other pair of columns blanked. It has no severity; ours is the
    number of such lines, 1 to 5 (severity 1 is MNIST-C's). Drawn on a 28x28 canvas as there and
    resized to the image.
    """

    description = "MNIST-C dotted line (1..5 dashed lines across the image); severity 1..5"
    display_name = "Dotted line"
    levels = (1, 2, 3, 4, 5)
    mnist_c_severity = 1

    def corrupt(self, image, lines, rng):
        last = MNIST_SIZE - 1
        for _ in range(lines):
            r0, r1 = rng.integers(0, last, size=2)
            mask = line_mask(mnist_canvas(), 0, r0, last, r1, LINE_WIDTH)
            for start in range(0, MNIST_SIZE + DASH, 2 * DASH):  # blank columns 0-1, 4-5, ...
                mask[:, start:start + DASH] = 0.0
            image = (image + fit_to(mask, image)).clip(0.0, 1.0)
        return image
