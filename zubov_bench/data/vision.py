"""torchvision datasets: MNIST, FashionMNIST (with the offline Debian fallback), CIFAR-10, SVHN."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path
from .base import COLOR_L2, COLOR_LINF, DataSpec, DatasetBundle, channel_stats

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _to_float(data, layout: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(data))
    if layout == "NHW":
        x = x.unsqueeze(1)
    elif layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    return x.contiguous().float().div_(255.0)


def _fetch(cls, root: Path, download: bool, name: str, **split_kw):
    try:
        return cls(str(root), download=download, **split_kw)
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "corrupted" in str(exc).lower():
            raise UserError(
                f"dataset {name!r} not found under {root}; pass --download (needs internet) "
                f"or place torchvision's files there"
            ) from None
        raise
    except OSError as exc:
        raise UserError(f"cannot get dataset {name!r}: {exc}") from None


def _bundle(name, train, test, layout, num_classes, source, **spec_kw) -> DatasetBundle:
    def xy(ds):
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels
        return _to_float(ds.data, layout), torch.as_tensor(np.asarray(labels), dtype=torch.long)

    x_train, y_train = xy(train)
    x_test, y_test = xy(test)
    mean, std = channel_stats(x_train)
    spec = DataSpec(name, tuple(x_train.shape[1:]), num_classes, mean, std, **spec_kw)
    return DatasetBundle(spec, x_train, y_train, x_test, y_test, source=source)


def install_debian_fashion(root: Path) -> bool:
    """Decompress Debian's recompressed FashionMNIST gzip files into torchvision's raw layout."""
    if not all((DEBIAN_FASHION_DIR / f"{f}.gz").exists() for f in FASHION_FILES):
        return False
    raw = root / "FashionMNIST" / "raw"
    for f in FASHION_FILES:
        if (raw / f).exists():
            continue
        with gzip.open(DEBIAN_FASHION_DIR / f"{f}.gz", "rb") as src, atomic_path(raw / f) as tmp:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return True


def load_fashion_mnist(root: Path, download: bool = False) -> DatasetBundle:
    from torchvision.datasets import FashionMNIST

    raw = root / "FashionMNIST" / "raw"
    source = f"{raw}"
    if not all((raw / f).exists() for f in FASHION_FILES):
        if install_debian_fashion(root):
            source = f"Debian dataset-fashion-mnist, decompressed into {raw}"
        elif not download:
            raise UserError(
                f"dataset 'fashion-mnist' not found under {root}; install it with "
                "'apt-get install dataset-fashion-mnist' or pass --download"
            )
    train = _fetch(FashionMNIST, root, download, "fashion-mnist", train=True)
    test = _fetch(FashionMNIST, root, download, "fashion-mnist", train=False)
    return _bundle("fashion-mnist", train, test, "NHW", 10, source)


def load_mnist(root: Path, download: bool = False) -> DatasetBundle:
    from torchvision.datasets import MNIST

    train = _fetch(MNIST, root, download, "mnist", train=True)
    test = _fetch(MNIST, root, download, "mnist", train=False)
    return _bundle("mnist", train, test, "NHW", 10, "torchvision MNIST")


def load_cifar10(root: Path, download: bool = False) -> DatasetBundle:
    from torchvision.datasets import CIFAR10

    train = _fetch(CIFAR10, root, download, "cifar10", train=True)
    test = _fetch(CIFAR10, root, download, "cifar10", train=False)
    return _bundle("cifar10", train, test, "NHWC", 10, "torchvision CIFAR10",
                   eps_linf=COLOR_LINF, eps_l2=COLOR_L2)


def load_svhn(root: Path, download: bool = False) -> DatasetBundle:
    from torchvision.datasets import SVHN

    train = _fetch(SVHN, root / "svhn", download, "svhn", split="train")
    test = _fetch(SVHN, root / "svhn", download, "svhn", split="test")
    return _bundle("svhn", train, test, "NCHW", 10, "torchvision SVHN",
                   eps_linf=COLOR_LINF, eps_l2=COLOR_L2)
