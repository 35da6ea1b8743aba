"""Gradient views: the same model, with gradients taken through a chosen solver.

* `deployed`: the model exactly as deployed (its own solver, adjoint and all);
* `rk4:N`: a fixed-step RK4 unroll with N steps and direct backprop (no adjoint);
* `bpda:N`: forward values from the deployed solver, gradients from the `rk4:N` unroll.

Adversarial examples found through any view are always scored on the deployed model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..models.ode import SolverConfig

MODES = ("deployed", "rk4", "bpda")
UNROLL_CANDIDATES = (10, 20, 40, 80)
MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class GradSolver:
    mode: str = "deployed"
    steps: int = 0

    def __str__(self) -> str:
        return self.mode if self.mode == "deployed" else f"{self.mode}:{self.steps}"

    @classmethod
    def parse(cls, text: str) -> "GradSolver":
        mode, sep, arg = text.strip().partition(":")
        if mode == "deployed" and not sep:
            return cls()
        if mode in ("rk4", "bpda"):
            try:
                steps = int(arg)
            except ValueError:
                steps = 0
            if steps >= 1:
                return cls(mode, steps)
            raise UserError(f"bad --grad-solver {text!r}: {mode} needs a step count >= 1, e.g. {mode}:20")
        raise UserError(f"bad --grad-solver {text!r}; use deployed, rk4:STEPS or bpda:STEPS")


def parse_grad_solvers(text: str | None) -> list[GradSolver] | None:
    """'deployed,rk4:40' -> views; None means: choose automatically (deployed + RK4 unroll)."""
    if text is None or not str(text).strip():
        return None
    views = [GradSolver.parse(part) for part in str(text).split(",") if part.strip()]
    return list(dict.fromkeys(views))


def unroll_solver(model, steps: int) -> SolverConfig:
    return dataclasses.replace(model.solver, method="rk4", steps=steps, adjoint=False)


def is_deployed_unroll(model, steps: int) -> bool:
    """True when the deployed solver already is this fixed-step RK4 with direct backprop."""
    s = model.solver
    return s.method == "rk4" and s.steps == steps and not s.adjoint


class GradientView(nn.Module):
    """Wraps a model so that attacks differentiate through the chosen solver."""

    def __init__(self, model: nn.Module, grad_solver: GradSolver):
        super().__init__()
        if grad_solver.mode != "deployed" and not getattr(model, "has_ode", False):
            raise UserError(f"--grad-solver {grad_solver} needs an ODE model")
        self.model = model
        self.grad_solver = grad_solver

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gs = self.grad_solver
        if gs.mode == "deployed":
            return self.model(x)
        with self.model.using_solver(unroll_solver(self.model, gs.steps)):
            unrolled = self.model(x)
        if gs.mode == "rk4":
            return unrolled
        with torch.no_grad():
            deployed = self.model(x)
        return unrolled + (deployed - unrolled).detach()

    def __getattr__(self, name: str):
        # Attribute lookups the view does not define (features, lyapunov, has_lyapunov, ...)
        # fall through to the wrapped model, so adaptive attacks see its structure.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


@dataclass
class UnrollChoice:
    steps: int
    agreement: float  # fraction of clean predictions equal to the deployed model's
    same_as_deployed: bool
    tried: dict  # steps -> agreement

    @property
    def ok(self) -> bool:
        return self.agreement >= MIN_AGREEMENT

    def describe(self, model) -> str:
        if self.same_as_deployed:
            return f"the deployed solver is already rk4:{self.steps} without adjoint; one run covers both"
        tried = ", ".join(f"rk4:{s} {a:.1%}" for s, a in self.tried.items())
        return (f"rk4:{self.steps} unroll agrees with the deployed {model.solver.describe()} on "
                f"{self.agreement:.1%} of clean predictions (tried {tried})")


def choose_unroll(model, predict, deployed_pred: torch.Tensor, candidates=None) -> UnrollChoice:
    """The RK4 unroll for attacks, with its clean agreement with the deployed model.

    Automatic (candidates None): the deployed solver itself when it already is a fixed-step RK4
    without adjoint, else the fewest of 10, 20, 40, 80 steps that agree on >= 99% of clean
    predictions (the best one, with a warning downstream, if none does).
    `predict(model)` returns the model's predictions on the evaluation subset.
    """
    if candidates is None:
        if is_deployed_unroll(model, model.solver.steps):
            return UnrollChoice(model.solver.steps, 1.0, True, {model.solver.steps: 1.0})
        candidates = UNROLL_CANDIDATES
    tried = {}
    for steps in candidates:
        if is_deployed_unroll(model, steps):
            tried[steps] = 1.0
        else:
            with model.using_solver(unroll_solver(model, steps)):
                tried[steps] = float((predict(model) == deployed_pred).float().mean())
        if tried[steps] >= MIN_AGREEMENT:
            break
    best = max(tried, key=lambda s: (tried[s], -s))
    return UnrollChoice(best, tried[best], is_deployed_unroll(model, best), tried)
