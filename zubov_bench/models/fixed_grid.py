"""Fixed-step Euler, midpoint and RK4 with torchdiffeq's grid and formulas, minus its per-call cost.

torchdiffeq's fixed-grid solvers wrap every field call (a dtype probe that computes |z|, a time
cast, a perturbation switch) and compare tensors on the time grid at every step. An attack calls
the solver thousands of times on small batches, where that bookkeeping costs as much as the vector
field itself. Here the grid is built once on the CPU, the loop only calls the field and combines
stages, and the arithmetic is torchdiffeq's, in the same order, so the results are the same
(a test compares them).
"""
from __future__ import annotations

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


def solve_fixed(f: Field, z0: torch.Tensor, times: torch.Tensor, method: str, step_size: float) -> torch.Tensor:
    """States at `times` (increasing, on any device), shape (len(times), *z0.shape)."""
    cpu_times = times.detach().cpu()
    grid = time_grid(cpu_times, step_size)
    t0, t1 = grid[:-1], grid[1:]
    dt = t1 - t0
    # stage times in the grid's dtype, computed as torchdiffeq computes them, moved once
    stages = torch.stack([t0, t0 + dt * (1 / 3), t0 + dt * (2 / 3), t1, t0 + 0.5 * dt], dim=1)
    stages_dev = stages.to(z0.device)
    out, j, y0 = [z0], 1, z0
    for i in range(len(dt)):
        y1 = y0 + _step(method, f, stages_dev[i], float(dt[i]), y0)
        while j < len(times) and t1[i] >= cpu_times[j]:
            out.append(_linear_interp(t0[i], t1[i], y0, y1, cpu_times[j]))
            j += 1
        y0 = y1
    return torch.stack(out)


def _linear_interp(t0: torch.Tensor, t1: torch.Tensor, y0, y1, t: torch.Tensor):
    if t == t0:
        return y0
    if t == t1:
        return y1
    return y0 + float((t - t0) / (t1 - t0)) * (y1 - y0)
