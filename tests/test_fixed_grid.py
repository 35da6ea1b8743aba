"""Our fixed-step solvers against torchdiffeq: the same grid, the same arithmetic, the same states."""
from __future__ import annotations

import pytest
import torch
import torchdiffeq

from zubov_bench.models.fixed_grid import METHODS, solve_fixed, time_grid
from zubov_bench.models.layers import MLPField
from zubov_bench.models.ode import CountingField, SolverConfig, integrate

CASES = [(1.0, 10, None), (1.0, 10, 3), (2.0, 7, 4), (0.3, 3, None), (1.0, 3, 5)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("time_dependent", [False, True])
@pytest.mark.parametrize("T,steps,n_times", CASES)
def test_states_are_bitwise_torchdiffeqs(method, time_dependent, T, steps, n_times):
    torch.manual_seed(0)
    field = MLPField(8, 16, time_dependent=time_dependent)
    z0 = torch.randn(20, 8)
    times = torch.tensor([0.0, T]) if n_times is None else torch.linspace(0, T, n_times)
    ref = torchdiffeq.odeint(field, z0, times, method=method, options=dict(step_size=T / steps))
    ours = solve_fixed(field, z0, times, method, T / steps)
    assert torch.equal(ours, ref)


def test_gradients_match_torchdiffeqs_to_rounding():
    torch.manual_seed(0)
    field = MLPField(8, 16)
    z0 = torch.randn(20, 8, requires_grad=True)
    times = torch.linspace(0, 1, 3)
    params = [z0, *field.parameters()]
    grads = []
    for solve in (lambda: torchdiffeq.odeint(field, z0, times, method="rk4", options=dict(step_size=0.1)),
                  lambda: solve_fixed(field, z0, times, "rk4", 0.1)):
        grads.append(torch.autograd.grad(solve().pow(2).sum(), params))
    for ref, ours in zip(*grads):
        assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_integrate_counts_four_evaluations_per_rk4_step():
    func = CountingField(MLPField(4, 8))
    integrate(func, torch.randn(3, 4), SolverConfig("rk4", steps=10))
    assert func.nfe == 40


def test_grid_ends_exactly_at_the_last_time():
    grid = time_grid(torch.tensor([0.0, 1.0]), 1 / 3)
    assert grid[0] == 0 and grid[-1] == 1 and len(grid) == 4
