"""ODE solving behind one small config: method, steps or tolerances, T, adjoint, NFE counting."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import UserError
from . import fixed_grid

FIXED_METHODS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")


class SolverError(RuntimeError):
    """The solver failed (step limit reached, or a non-finite state)."""


@dataclass(frozen=True)
class SolverConfig:
    method: str = "rk4"
    steps: int = 10  # fixed-step methods: number of steps on [0, T]
    rtol: float = 1e-3  # adaptive methods
    atol: float = 1e-4
    T: float = 1.0
    adjoint: bool = False
    max_num_steps: int = 2000  # adaptive methods: give up (SolverError) past this many steps

    def __post_init__(self):
        if self.method not in FIXED_METHODS + ADAPTIVE_METHODS:
            known = ", ".join(FIXED_METHODS + ADAPTIVE_METHODS)
            raise UserError(f"unknown ODE solver {self.method!r}; known: {known}")
        if self.steps < 1:
            raise UserError(f"solver steps must be >= 1, got {self.steps}")
        if not (self.T > 0):
            raise UserError(f"integration time T must be > 0, got {self.T}")
        if not (self.rtol > 0 and self.atol > 0):
            raise UserError("solver tolerances must be > 0")

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    @classmethod
    def parse(cls, text: str, base: "SolverConfig | None" = None) -> "SolverConfig":
        """'rk4:20' (fixed, 20 steps), 'dopri5' or 'dopri5:1e-6' (adaptive, rtol=atol)."""
        base = base or cls()
        method, _, arg = text.partition(":")
        if not arg:
            return replace(base, method=method)
        try:
            if method in ADAPTIVE_METHODS:
                tol = float(arg)
                return replace(base, method=method, rtol=tol, atol=tol)
            return replace(base, method=method, steps=int(arg))
        except ValueError:
            raise UserError(f"bad solver spec {text!r}; use e.g. rk4:20 or dopri5:1e-5") from None

    def describe(self) -> str:
        if self.adaptive:
            return f"{self.method}(rtol={self.rtol:g},atol={self.atol:g},T={self.T:g})"
        return f"{self.method}:{self.steps}(T={self.T:g})" + ("+adjoint" if self.adjoint else "")


class CountingField(nn.Module):
    """Wraps a vector field f(t, z) and counts its evaluations (NFE)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t, z):
        self.nfe += 1
        return self.field(t, z)


def integrate(func: CountingField, z0: torch.Tensor, solver: SolverConfig,
              times: torch.Tensor | None = None) -> torch.Tensor:
    """Solve from z0 and return the states at `times` (default: only z(T))."""
    import torchdiffeq

    only_last = times is None
    if solver.method in fixed_grid.METHODS and not solver.adjoint:  # its grid is built on the CPU
        # so a GPU solve does not wait for a copy back; the default [0, T] is not even a tensor
        grid_times = _start_and_end(solver.T, z0.dtype) if only_last else times.detach().to("cpu", z0.dtype)
        loop = _graphed_copy if _cuda_graphs and z0.device.type == "cuda" else None
        return _last_or_all(fixed_grid.solve_fixed(func, z0, grid_times, solver.method, solver.T / solver.steps,
                                                   loop), only_last)
    if only_last:
        times = torch.tensor([0.0, solver.T])
    times = times.to(device=z0.device, dtype=z0.dtype)
    if solver.adaptive:
        kw = dict(rtol=solver.rtol, atol=solver.atol, options=dict(max_num_steps=solver.max_num_steps))
    else:
        kw = dict(options=dict(step_size=solver.T / solver.steps))
    odeint = torchdiffeq.odeint_adjoint if solver.adjoint else torchdiffeq.odeint
    try:
        zs = odeint(func, z0, times, method=solver.method, **kw)
    except (AssertionError, RuntimeError) as exc:
        if "max_num_steps" in str(exc) or "underflow" in str(exc):
            raise SolverError(f"ODE solver {solver.describe()} failed: {exc}") from None
        raise
    return _last_or_all(zs, only_last)


@functools.lru_cache(maxsize=64)
def _start_and_end(T: float, dtype: torch.dtype) -> tuple[float, float]:
    """[0, T] as torchdiffeq would see it (a float32 tensor cast to the state's dtype), as floats."""
    return tuple(torch.tensor([0.0, T]).to(dtype).tolist())


def _last_or_all(zs: torch.Tensor, only_last: bool) -> torch.Tensor:
    return zs[-1] if only_last else zs


# --cuda-graphs: fixed-step solves on a CUDA device replay captured graphs (see use_cuda_graphs)
_cuda_graphs = False


def use_cuda_graphs(on: bool) -> bool:
    """Capture the fixed-step solver loop in CUDA graphs for every later solve on a CUDA device.

    A step of these small models is thousands of tiny kernels, and on a GPU their launches are
    the time (bench/RESULTS.md). `torch.compile(mode="reduce-overhead")` traces the loop
    (`fixed_grid.run_plan`: field calls and stage arithmetic, no host reads) into one graph and
    replays it as CUDA graphs (cudagraph trees, which keep outputs a pending backward needs), so
    a solve is a few launches; training and attacks both go through it. Solves on a CPU, with an
    adaptive solver or the adjoint stay eager. Process-wide; returns the previous setting.
    """
    global _cuda_graphs
    previous, _cuda_graphs = _cuda_graphs, bool(on)
    return previous


def cuda_graphs_enabled() -> bool:
    return _cuda_graphs


@functools.lru_cache(maxsize=None)
def graphed_loop(backend: str = "inductor", mode: str | None = "reduce-overhead"):
    """`fixed_grid.run_plan` under torch.compile; one compiled function for every solve. Tests trace it with
    backend="eager", mode=None on a CPU to check that the loop is one graph."""
    if not hasattr(torch, "compile"):
        raise UserError(f"--cuda-graphs needs torch.compile, which torch {torch.__version__} lacks")
    # Every model's field, solver plan and batch size is a guard of this one code object: a bench or
    # an eval of several checkpoints passes torch's default of 8 recompiles and would fall back to
    # eager solves without saying so
    import torch._dynamo.config as dynamo_config

    for limit in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, limit):
            setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 64))
    # dynamic=None: a second batch size recompiles once with a dynamic batch dimension instead of
    # once per size (attacks shrink their batch as samples fall); CUDA graphs are recorded per size
    return torch.compile(fixed_grid.run_plan, backend=backend, mode=mode)


def _graphed_copy(*args) -> torch.Tensor:
    """The graphed loop's states, copied out of the graph's memory: the next replay reuses that
    memory, and a caller (an attack keeping last iteration's states) must not see it change."""
    return graphed_loop()(*args).clone()


def compile_field(model: nn.Module) -> None:
    """torch.compile the model's vector field in place (`odefunc.field`).

    `Module.compile()` compiles the call, not a wrapper module, so state_dict keys stay as they
    are (no `_orig_mod.` prefix) and checkpoints load into an uncompiled model.
    """
    func = getattr(model, "odefunc", None)
    if not isinstance(func, CountingField):
        name = getattr(model, "registry_name", type(model).__name__)
        raise UserError(f"--compile: model {name!r} has no ODE vector field (odefunc) to compile")
    if not hasattr(torch, "compile"):
        raise UserError(f"--compile needs torch.compile, which torch {torch.__version__} lacks")
    func.field.compile()


class SolverMixin:
    """Gives a model a swappable `solver` and an NFE counter over its `odefunc`."""

    solver: SolverConfig
    odefunc: CountingField

    @property
    def nfe(self) -> int:
        return self.odefunc.nfe

    def reset_nfe(self) -> None:
        self.odefunc.nfe = 0

    @contextlib.contextmanager
    def using_solver(self, solver: SolverConfig | str):
        """Temporarily swap the solver (e.g. a fixed-step RK4 unroll for attacks)."""
        if isinstance(solver, str):
            solver = SolverConfig.parse(solver, base=self.solver)
        old, self.solver = self.solver, solver
        try:
            yield self
        finally:
            self.solver = old
