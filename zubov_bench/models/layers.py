"""Building blocks: stems (feature extractors), vector fields, equilibria placement."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..data.base import DataSpec
from ..errors import UserError

ACTIVATIONS = {"softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU, "relu": nn.ReLU}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, sn: bool):
        super().__init__()
        self.body = nn.Sequential(
            _sn(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), sn), nn.GroupNorm(8, c_out), nn.ReLU(),
            _sn(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), sn), nn.GroupNorm(8, c_out),
        )
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out
                     else _sn(nn.Conv2d(c_in, c_out, 1, stride, bias=False), sn))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def make_stem(spec: DataSpec, d: int, kind: str = "auto", width: int = 128, sn: bool = False) -> nn.Module:
    """The feature extractor phi: normalised input -> z0 in R^d."""
    if kind == "auto":
        if not spec.is_image:
            kind = "identity" if spec.input_dim == d else "mlp"
        elif spec.input_shape[1] <= 8:
            kind = "mlp"
        elif spec.channels == 1:
            kind = "conv"
        else:
            kind = "resnet"
    if kind == "identity":
        if spec.input_dim != d:
            raise UserError(f"stem 'identity' needs d == input size ({spec.input_dim}), got d={d}")
        return nn.Flatten()
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), _sn(nn.Linear(spec.input_dim, width), sn), nn.ReLU(),
                             _sn(nn.Linear(width, d), sn))
    if not spec.is_image:
        raise UserError(f"stem {kind!r} needs image data")
    c, h, w = spec.input_shape
    if kind == "conv":
        conv = nn.Sequential(
            _sn(nn.Conv2d(c, 32, 4, 2, 1), sn), nn.ReLU(), _sn(nn.Conv2d(32, 64, 4, 2, 1), sn), nn.ReLU(),
            nn.Flatten(),
        )
        return nn.Sequential(conv, _sn(nn.Linear(64 * (h // 4) * (w // 4), d), sn))
    if kind == "resnet":
        return nn.Sequential(
            _sn(nn.Conv2d(c, 64, 3, 1, 1, bias=False), sn), nn.GroupNorm(8, 64), nn.ReLU(),
            ResBlock(64, 64, 1, sn), ResBlock(64, 128, 2, sn), ResBlock(128, 256, 2, sn),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), _sn(nn.Linear(256, d), sn),
        )
    raise UserError(f"unknown stem {kind!r}; known: auto, mlp, conv, resnet, identity")


class MLPField(nn.Module):
    """f(t, z): an MLP d -> hidden -> d, optionally with t appended to its input."""

    def __init__(self, d: int, hidden: int, act: str = "softplus", time_dependent: bool = False):
        super().__init__()
        self.time_dependent = time_dependent
        self.net = nn.Sequential(nn.Linear(d + int(time_dependent), hidden), activation(act),
                                 nn.Linear(hidden, d))

    def forward(self, t, z):
        if self.time_dependent:
            t_col = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(*z.shape[:-1], 1)
            z = torch.cat([z, t_col], dim=-1)
        return self.net(z)


class DampedField(nn.Module):
    """f(t, z) - gamma z: a linear leak under a learned field.

    It shifts every eigenvalue of df/dz by -gamma, so coordinates the learned part leaves alone
    (saturated or dead units, state directions no equilibrium spans) contract instead of drifting.
    """

    def __init__(self, field: nn.Module, gamma: float):
        super().__init__()
        self.field, self.gamma = field, gamma

    def forward(self, t, z):
        return self.field(t, z) - self.gamma * z


class AnchoredField(nn.Module):
    """g(t, z) - sum_k phi_k(z) g(t, e_k), phi_k(z) = exp(-||z - e_k||^2 / (2 sigma^2)).

    The equilibria become zeros of the field by construction, up to the overlap
    exp(-dist^2 / (2 sigma^2)) of the bumps (sigma = `width` times the smallest distance between
    two e_k), and df/dz(e_k) = dg/dz(e_k) since each bump is flat at its centre. So the stability
    of e_k can be trained without fighting the pull of f(e_k) = 0 on the same weights (measured:
    with a free field the two settle on dead units and a zero Jacobian, docs/zubov-net.md).
    The equilibria stay owned by the Lyapunov network: `bind` it after construction.
    """

    def __init__(self, field: nn.Module, width: float):
        super().__init__()
        self.field, self.width = field, width
        self._owner = None

    def bind(self, owner: nn.Module) -> "AnchoredField":
        """Read the equilibria from `owner.equilibria` (not registered here: no duplicate weights)."""
        object.__setattr__(self, "_owner", owner)
        return self

    def forward(self, t, z):
        eq = self._owner.equilibria
        if len(eq) > 1:
            dist = torch.cdist(eq, eq).masked_fill(torch.eye(len(eq), dtype=torch.bool, device=eq.device),
                                                   float("inf"))
            sigma = self.width * dist.min().detach()
        else:
            sigma = torch.tensor(self.width, device=eq.device)
        bumps = torch.exp(-(z.unsqueeze(-2) - eq).pow(2).sum(-1) / (2 * sigma**2))  # (..., K)
        return self.field(t, z) - bumps @ self.field(t, eq)


def simplex_vectors(num_classes: int, d: int) -> torch.Tensor:
    """K unit vectors in R^d with pairwise cosine -1/(K-1) (a regular simplex)."""
    if d < num_classes - 1:
        raise UserError(f"a {num_classes}-class simplex needs d >= {num_classes - 1}, got d={d}")
    k = num_classes
    centred = torch.eye(k, dtype=torch.float64) - 1.0 / k
    # orthonormal basis of the (K-1)-dim subspace the centred vectors span
    u, s, _ = torch.linalg.svd(centred)
    coords = centred @ u[:, : k - 1]  # (K, K-1)
    coords = coords / coords.norm(dim=1, keepdim=True)
    out = torch.zeros(k, d, dtype=torch.float64)
    out[:, : k - 1] = coords
    return out.float()


def pairwise_cosines(v: torch.Tensor) -> torch.Tensor:
    v = v / v.norm(dim=1, keepdim=True)
    cos = v @ v.T
    return cos[~torch.eye(len(v), dtype=torch.bool)]


def rehu(t: torch.Tensor, delta: float) -> torch.Tensor:
    """Rectified Huber unit: 0 for t<=0, t^2/(2 delta) on (0, delta], t - delta/2 beyond."""
    return torch.where(t <= 0, torch.zeros_like(t),
                       torch.where(t <= delta, t * t / (2 * delta), t - delta / 2))


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


__all__ = ["make_stem", "MLPField", "DampedField", "AnchoredField", "simplex_vectors", "pairwise_cosines", "rehu", "unit_rows",
           "activation"]
