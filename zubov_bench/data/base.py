"""Dataset bundle and metadata shared by every dataset in the registry."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Tuple

import torch

MNIST_LIKE_LINF = (0.05, 0.1, 0.2, 0.3)
MNIST_LIKE_L2 = (1.0, 2.0)
COLOR_LINF = (2 / 255, 4 / 255, 8 / 255)
COLOR_L2 = (0.25, 0.5)


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its inputs, and the dataset's canonical ε grids."""

    name: str
    input_shape: Tuple[int, ...]  # (C, H, W) for images, (D,) for vectors
    num_classes: int
    mean: Tuple[float, ...]  # per-channel normalisation applied *inside* the model
    std: Tuple[float, ...]
    eps_linf: Tuple[float, ...] = MNIST_LIKE_LINF
    eps_l2: Tuple[float, ...] = MNIST_LIKE_L2

    @property
    def channels(self) -> int:
        return self.input_shape[0] if len(self.input_shape) == 3 else 1

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def input_dim(self) -> int:
        n = 1
        for s in self.input_shape:
            n *= s
        return n

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        d = dict(d)
        for key in ("input_shape", "mean", "std", "eps_linf", "eps_l2"):
            d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class DatasetBundle:
    """Train and test tensors with inputs in [0, 1] and integer labels."""

    spec: DataSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = field(default="")

    def __post_init__(self):
        for x in (self.x_train, self.x_test):
            assert x.dtype == torch.float32 and tuple(x.shape[1:]) == self.spec.input_shape
        for x, y in ((self.x_train, self.y_train), (self.x_test, self.y_test)):
            assert len(x) == len(y) and y.dtype == torch.long


def default_data_root() -> Path:
    return Path(os.environ.get("ZUBOV_BENCH_DATA", Path.home() / ".cache" / "zubov-bench" / "data"))


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a training tensor (N, C, H, W) or (N, D)."""
    dims = (0, 2, 3) if x.dim() == 4 else (0, 1)
    mean = x.mean(dim=dims).reshape(-1).tolist()
    std = x.std(dim=dims).clamp_min(1e-3).reshape(-1).tolist()
    return tuple(round(m, 4) for m in mean), tuple(round(s, 4) for s in std)
