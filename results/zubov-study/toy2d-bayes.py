"""The best accuracy any classifier can expect on toy2d: the Bayes rule of its generator.

toy2d (zubov_bench.data.small.make_toy2d) draws each class uniformly along an arc and adds
Gaussian noise, so the class densities are known exactly and the Bayes-optimal classifier is
argmax_k p(x | k) (the classes are balanced). This prints that rule's accuracy on the committed
toy2d test split, its expected accuracy on fresh draws (a Monte Carlo estimate with its standard
error), and the chance that the Bayes rule itself reaches a given accuracy on a 300-point test set.

    python results/zubov-study/toy2d-bayes.py [TARGET]   (TARGET: an accuracy, default 0.97)
"""
from __future__ import annotations

import math
import sys

import numpy as np
from scipy.stats import binom

from zubov_bench.data import load_dataset
from zubov_bench.data.small import TOY2D_NOISE, TOY2D_SCALE, TOY2D_SHIFT, make_toy2d, toy2d_arc

ARC_POINTS = 4001  # quadrature nodes along each arc


def arcs(num_classes: int = 3) -> list[np.ndarray]:
    """Each class's noiseless arc, in the dataset's [0, 1]^2 coordinates."""
    t = np.linspace(0.0, math.pi, ARC_POINTS)
    return [(toy2d_arc(k, num_classes, t) + TOY2D_SHIFT) / TOY2D_SCALE for k in range(num_classes)]


def bayes_predict(x: np.ndarray, chunk: int = 4000) -> np.ndarray:
    """argmax_k of the class density: the Gaussian noise kernel averaged along arc k."""
    sigma = TOY2D_NOISE / TOY2D_SCALE
    dens = np.zeros((len(x), 3))
    for k, pts in enumerate(arcs()):
        for i in range(0, len(x), chunk):
            d2 = ((x[i:i + chunk, None, :] - pts[None]) ** 2).sum(-1)
            dens[i:i + chunk, k] = np.exp(-d2 / (2 * sigma ** 2)).mean(1)
    return dens.argmax(1)


def main(argv: list[str]) -> int:
    target = float(argv[0]) if argv else 0.97
    data = load_dataset("toy2d")
    x, y = data.x_test.numpy().reshape(-1, 2), data.y_test.numpy()
    n = len(y)
    test_acc = float((bayes_predict(x) == y).mean())
    fresh_x, fresh_y = make_toy2d(n_per_class=20000, seed=123)
    p = float((bayes_predict(fresh_x) == fresh_y).mean())
    se = math.sqrt(p * (1 - p) / len(fresh_y))
    need = math.ceil(target * n - 1e-9)
    chance = float(1 - binom.cdf(need - 1, n, p))
    print(f"Bayes rule on the toy2d test split: {test_acc:.1%} ({round(test_acc * n)} of {n})")
    print(f"Bayes accuracy of the generator: {p:.2%} +- {se:.2%} (60,000 fresh points)")
    print(f"chance that the Bayes rule scores >= {target:.0%} ({need} of {n}) on a fresh test split: {chance:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
