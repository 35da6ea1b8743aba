"""Device selection and bitwise-reproducible execution."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


@contextmanager
def deterministic_algorithms(on: bool, device: torch.device):
    """Use torch's deterministic kernels inside the block, then restore the caller's setting.

    Multi-threaded CPU kernels such as the backward of `t[index]` accumulate in an order that
    depends on thread timing, so without this a seed does not reproduce bit for bit. Ops with no
    deterministic kernel warn instead of failing.
    """
    if not on:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(True, warn_only=previous[1] if previous[0] else True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
