"""Fixed-step Euler, midpoint and RK4 with torchdiffeq's grid and formulas, minus its per-call cost.

torchdiffeq's fixed-grid solvers wrap every field call (a dtype probe that computes |z|, a time
cast, a perturbation switch) and compare tensors on the time grid at every step. An attack calls
the solver thousands of times on small batches, where that bookkeeping costs as much as the vector
field itself. Here the grid is built once on the CPU, the loop only calls the field and combines
stages, and the arithmetic is torchdiffeq's, in the same order, so the results are the same
(a test compares them).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

METHODS = ("euler", "midpoint", "rk4")
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # f(t, z), t a 0-dim tensor


def time_grid(times: torch.Tensor, step_size: float) -> torch.Tensor:
    """torchdiffeq's grid: start + k * step_size in the dtype of `times`, ending exactly at times[-1]."""
    start, end = times[0], times[-1]
    n = int(torch.ceil((end - start) / step_size + 1).item())
    grid = torch.arange(0, n, dtype=times.dtype) * step_size + start
    grid[-1] = end
    return grid


def _step(method: str, f: Field, t: torch.Tensor, dt: float, y0: torch.Tensor) -> torch.Tensor:
    """One step's increment; t holds the stage times (t0, t0 + dt/3, t0 + 2dt/3, t1, t0 + dt/2)."""
    k1 = f(t[0], y0)
    if method == "euler":
        return dt * k1
    if method == "midpoint":
        return dt * f(t[4], y0 + k1 * (0.5 * dt))
    # the 3/8-rule RK4 that torchdiffeq's "rk4" uses (rk4_alt_step_func)
    k2 = f(t[1], y0 + dt * k1 * (1 / 3))
    k3 = f(t[2], y0 + dt * (k2 - k1 * (1 / 3)))
    k4 = f(t[3], y0 + dt * (k1 - k2 + k3))
    return (k1 + 3 * (k2 + k3) + k4) * dt * 0.125


def solve_fixed(f: Field, z0: torch.Tensor, times: torch.Tensor | tuple[float, ...], method: str,
                step_size: float, loop: Callable | None = None) -> torch.Tensor:
    """States at `times` (increasing; a CPU tensor, or a tuple of floats in z0's dtype), shape
    (len(times), *z0.shape).

    The loop reads nothing back from the device: the grid, the step sizes and the interpolation
    weights are Python numbers of a plan built once per (times, dtype, step size) on the CPU, and
    the stage times are moved to the device once per plan and device. An attack iteration thus
    costs no host synchronisation here (tests/test_host_sync.py counts them). `loop` replaces
    `run_plan` (a compiled copy of it).
    """
    key = tuple(times.tolist()) if isinstance(times, torch.Tensor) else tuple(times)
    plan = _plan(key, z0.dtype, float(step_size))
    stages = _device_stages(key, z0.dtype, float(step_size), z0.device)
    return (loop or run_plan)(f, z0, stages, plan.dts, plan.outputs, method)


def run_plan(f: Field, z0: torch.Tensor, stages: torch.Tensor, dts: tuple[float, ...],
             outputs: tuple[tuple, ...], method: str) -> torch.Tensor:
    """The solver loop itself: only field calls and stage arithmetic, so torch.compile traces it as
    one graph (models/ode.py captures it in CUDA graphs under --cuda-graphs)."""
    out, y0 = [z0], z0
    for i, dt in enumerate(dts):
        y1 = y0 + _step(method, f, stages[i], dt, y0)
        for weight in outputs[i]:  # the requested times inside step i
            out.append(y0 if weight == AT_START else y1 if weight == AT_END else y0 + weight * (y1 - y0))
        y0 = y1
    return torch.stack(out)


@dataclass(frozen=True)
class _Plan:
    dts: tuple[float, ...]  # step sizes, as torchdiffeq computes them in the grid's dtype
    stages: torch.Tensor  # (steps, 5) stage times on the CPU
    outputs: tuple[tuple[object, ...], ...]  # per step: the times it reaches, as AT_START, AT_END or a weight


@functools.lru_cache(maxsize=256)
def _plan(times: tuple[float, ...], dtype: torch.dtype, step_size: float) -> _Plan:
    cpu_times = torch.tensor(times, dtype=dtype)
    grid = time_grid(cpu_times, step_size)
    t0, t1 = grid[:-1], grid[1:]
    dt = t1 - t0
    # stage times in the grid's dtype, computed as torchdiffeq computes them
    stages = torch.stack([t0, t0 + dt * (1 / 3), t0 + dt * (2 / 3), t1, t0 + 0.5 * dt], dim=1)
    outputs, j = [], 1
    for i in range(len(dt)):
        weights = []
        while j < len(cpu_times) and t1[i] >= cpu_times[j]:
            weights.append(_interp_weight(t0[i], t1[i], cpu_times[j]))
            j += 1
        outputs.append(tuple(weights))
    return _Plan(tuple(float(d) for d in dt), stages, tuple(outputs))


@functools.lru_cache(maxsize=256)
def _device_stages(times: tuple[float, ...], dtype: torch.dtype, step_size: float,
                   device: torch.device) -> torch.Tensor:
    """The plan's stage times on `device`: one copy per plan, not one per solve."""
    return _plan(times, dtype, step_size).stages.to(device)


# a requested time equal to a step's start or end: that state (strings, which torch.compile treats as constants)
AT_START, AT_END = "start", "end"


def _interp_weight(t0: torch.Tensor, t1: torch.Tensor, t: torch.Tensor):
    """torchdiffeq's linear interpolation weight of `t` in [t0, t1] (a weight that rounds to 1
    is not the end state: torchdiffeq still interpolates, and so do we)."""
    if t == t0:
        return AT_START
    if t == t1:
        return AT_END
    return float((t - t0) / (t1 - t0))
