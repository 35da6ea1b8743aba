"""`LyapunovModel`: what a model with Lyapunov structure provides, in one place.

The Lyapunov-aware attack (perturbations/lyapunov.py), the alignment diagnostics
(evaluation/alignment.py) and the region-of-attraction analysis (evaluation/roa.py) call these
members. A model class that declares `has_lyapunov = True` must have every one of them:
`@register_model` refuses it otherwise (TypeError), so no such model is silently skipped.
`cfg.level` (the c of PRoA_k = {V_k < c}) is optional; without it the level is 1.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..errors import UserError


@runtime_checkable
class LyapunovModel(Protocol):
    has_lyapunov: bool  # True: the class declares Lyapunov structure

    @property
    def equilibria(self) -> torch.Tensor:
        """(K, d): the equilibrium e_k of each class in state space."""

    def lyapunov(self, z: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        """V_k(z): (N, K) for every class, or (N,) for class `cls` of each row."""

    def vector_field(self, z: torch.Tensor) -> torch.Tensor:
        """f(z), (N, d): the autonomous field of the flow."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """z0 = phi(x): raw inputs in [0, 1] to initial states."""

    def solve(self, z0: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """z(T), or z at every time of `times` (leading time axis)."""

    def grid(self, n_points: int) -> torch.Tensor:
        """n_points times on [0, T]."""

    def using_solver(self, solver):
        """Context manager: integrate with another solver (a SolverConfig or its text)."""

    def initial_state_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate head -V(z0(x))/tau that the Lyapunov-aware attack differentiates."""


# The members above, in the order they are declared
LYAPUNOV_MEMBERS = tuple(name for name in LyapunovModel.__dict__
                         if not name.startswith("_") and name != "has_lyapunov")


def missing_members(obj) -> list[str]:
    """The LyapunovModel members `obj` (a model or its class) lacks."""
    return [name for name in LYAPUNOV_MEMBERS if not hasattr(obj, name)]


def check_lyapunov_model(cls) -> None:
    """At registration: a class that declares `has_lyapunov` has every LyapunovModel member."""
    missing = missing_members(cls) if getattr(cls, "has_lyapunov", False) else []
    if missing:
        raise TypeError(f"{cls.__module__}.{cls.__name__} declares has_lyapunov = True but lacks "
                        f"{', '.join(missing)} (zubov_bench.models.protocols.LyapunovModel)")


def is_lyapunov_model(model) -> bool:
    """Whether a model (or a view of one) declares Lyapunov structure and provides it."""
    return bool(getattr(model, "has_lyapunov", False)) and not missing_members(model)


def require_lyapunov_model(model, purpose: str) -> None:
    """UserError naming what is missing, for analysis that needs a LyapunovModel."""
    missing = missing_members(model)
    if missing:
        raise UserError(f"model has no {', '.join(missing)}: {purpose} need a Lyapunov model "
                        "(zubov_bench.models.protocols.LyapunovModel)")
