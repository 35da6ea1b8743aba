"""Counter-based random numbers: uniforms per (seed, sample index, element), no per-sample loop.

Each value is splitmix64 applied to a key built from the seed, the dataset index of the sample
and the element's position, so a sample's noise never depends on the batch it is drawn in.
int64 arithmetic wraps in torch; right shifts are arithmetic, so we mask them to be logical.
"""
from __future__ import annotations

import math

import torch

N_STREAMS = 4  # independent uniforms per element (Box-Muller needs two, salt-pepper two)


def _signed(c: int) -> int:
    c %= 1 << 64
    return c - (1 << 64) if c >= 1 << 63 else c


GOLDEN = _signed(0x9E3779B97F4A7C15)
MUL1 = _signed(0xBF58476D1CE4E5B9)
MUL2 = _signed(0x94D049BB133111EB)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64: one step of the generator from state `z` (int64 tensor), bit for bit."""
    z = z + GOLDEN
    z = (z ^ _shr(z, 30)) * MUL1
    z = (z ^ _shr(z, 27)) * MUL2
    return z ^ _shr(z, 31)


def uniforms(seed: int, index: torch.Tensor, shape: tuple[int, ...], stream: int) -> torch.Tensor:
    """float64 uniforms in [0, 1) of shape (len(index), *shape), a pure function of the arguments."""
    device = index.device
    key = mix64(mix64(torch.tensor(_signed(seed), device=device)) ^ index.to(torch.int64))
    numel = math.prod(shape)
    counters = torch.arange(numel, device=device, dtype=torch.int64) * N_STREAMS + stream
    bits = _shr(mix64(key[:, None] ^ mix64(counters)[None, :]), 11)  # top 53 bits
    return (bits.to(torch.float64) * 2.0**-53).reshape(len(index), *shape)


def normals(seed: int, index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normals by Box-Muller from streams 0 and 1."""
    u1 = 1.0 - uniforms(seed, index, shape, stream=0)  # in (0, 1], safe for log
    u2 = uniforms(seed, index, shape, stream=1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
