"""The shared part of every corruption: severity levels, per-example seeding, tensor <-> numpy.

A corruption works on one image at a time, as an (H, W, C) float64 array in [0, 1] with C = 1 or
3, and draws its randomness from a numpy Generator seeded by (evaluation seed, dataset index,
corruption name): an example is corrupted the same way whatever batch it is drawn in, and the
same random draw (a direction, a line, a noise field) serves every severity, so a higher severity
only strengthens the same corruption.

MNIST-C's parameters are in pixels of 28x28 images; lengths are scaled by `size / 28` so that an
8x8 `digits` image or a 32x32 CIFAR image sees the same corruption relative to its size.
"""
from __future__ import annotations

import math
import zlib
from typing import ClassVar

import numpy as np
import torch

from ...errors import UserError
from ..base import Perturbation, require_images

SEVERITIES = (1, 2, 3, 4, 5)
MNIST_SIZE = 28  # the image side MNIST-C's pixel parameters refer to


class Corruption(Perturbation):
    """A common corruption at integer severity 1..5 (`levels[severity - 1]` are its parameters).

    Subclasses set `levels`, `mnist_c_severity` and `description`, and implement `corrupt`.
    """

    threat: str = "noise"  # not an attack: per-example, no threat-model ball to check
    kind: ClassVar[str] = "noise"
    group: ClassVar[str] = "corruptions"
    needs_images: ClassVar[bool] = True
    noise_grid: ClassVar[tuple[float, ...]] = tuple(float(s) for s in SEVERITIES)
    max_severity: ClassVar[float] = float(SEVERITIES[-1])
    levels: ClassVar[tuple] = ()  # one parameter (tuple) per severity 1..5
    # The severity whose parameters MNIST-C published as its fixed corruption (None: the
    # corruption has no parameter in MNIST-C and the ladder is ours, see the docstring)
    mnist_c_severity: ClassVar[int | None] = None

    def perturb(self, model, x, y, severity, generator, index):
        require_images(self.name, x)
        level = self.level(severity)
        if index is None:
            index = torch.arange(len(x))
        seed = generator.initial_seed()
        images = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
        out = np.stack([np.clip(self.corrupt(image.copy(), level, self.rng(seed, int(i))), 0.0, 1.0)
                        for image, i in zip(images, index.tolist())])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)

    def level(self, severity: float):
        """The parameters of an integer severity 1..5; UserError for anything else (0 included:
        severity 0 would be the clean image, which the clean column already reports)."""
        if severity != int(severity) or int(severity) not in SEVERITIES:
            raise UserError(f"{self.name}: severity must be an integer from {SEVERITIES[0]} to "
                            f"{SEVERITIES[-1]}, got {severity:g}")
        return self.levels[int(severity) - 1]

    def check_severity(self, severity: float) -> None:
        self.level(severity)

    def rng(self, seed: int, index: int) -> np.random.Generator:
        """The example's random stream: a pure function of (seed, index, corruption name)."""
        return np.random.default_rng([seed, index, zlib.crc32(self.name.encode())])

    def corrupt(self, image: np.ndarray, level, rng: np.random.Generator) -> np.ndarray:
        """The corrupted (H, W, C) image; values outside [0, 1] are clipped afterwards."""
        raise NotImplementedError


# --- helpers shared by several corruptions -----------------------------------------------------
def pixels(image: np.ndarray, length: float) -> float:
    """A length given in pixels of a 28x28 image, scaled to this image's size."""
    return length * max(image.shape[:2]) / MNIST_SIZE


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) grey levels: the image itself for one channel, ITU-R 709 luma for RGB (as
    skimage.color.rgb2gray, which MNIST-C uses)."""
    if image.shape[2] == 1:
        return image[:, :, 0]
    return image @ np.array([0.2125, 0.7154, 0.0721])


def warp_centred(image: np.ndarray, linear: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
    """Output pixel p takes the input at `linear @ (p - centre) + centre + shift` (bilinear, zero
    outside), in (column, row) coordinates: MNIST-C's skimage `warp(x, inverse_map=aff)` with the
    translation that keeps the image centre fixed."""
    from skimage.transform import AffineTransform, warp

    h, w = image.shape[:2]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ centre + np.asarray(shift, dtype=float)
    transform = AffineTransform(matrix=matrix)
    return np.stack([warp(image[:, :, c], inverse_map=transform, order=1, mode="constant", cval=0.0)
                     for c in range(image.shape[2])], axis=2)


def line_mask(shape: tuple[int, int], c0: float, r0: float, c1: float, r1: float, width: float) -> np.ndarray:
    """MNIST-C's `line_from_points`: intensity log(1 - d / width) + 1 at vertical distance d from
    the line through (c0, r0) and (c1, r1), zero beyond `width` and outside columns [c0, c1)."""
    h, w = shape
    if c1 == c0:
        return np.zeros(shape)
    cols, rows = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float), sparse=True)
    slope = (r1 - r0) / (c1 - c0)
    dist = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0.0, width - 1e-10)
    mask = np.clip(np.log(1.0 - dist / width) + 1.0, 0.0, 1.0)
    mask[:, :max(math.floor(c0), 0)] = 0.0
    mask[:, max(math.ceil(c1), 0):] = 0.0
    return mask


LINE_WIDTH = 2.3  # MNIST-C's line half-width in 28x28 pixels


def mnist_canvas() -> tuple[int, int]:
    """The 28x28 canvas on which patterns (lines, fog, spatter) are drawn as MNIST-C draws them."""
    return (MNIST_SIZE, MNIST_SIZE)


def fit_to(pattern: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A 28x28 pattern resized (bilinear, anti-aliased when shrinking) to the image, as (H, W, 1):
    the pattern keeps its size relative to the image, and its random statistics (a blurred noise
    field's spread depends on the blur in pixels) stay those of MNIST-C."""
    from skimage.transform import resize

    h, w = image.shape[:2]
    if pattern.shape != (h, w):
        pattern = resize(pattern, (h, w), order=1, mode="edge", anti_aliasing=h < pattern.shape[0])
    return pattern[:, :, None]
