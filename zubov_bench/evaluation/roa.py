"""True regions of attraction on a 2-D grid, and their IoU with the prescribed ones (PRoA).

Works for any model with d = 2 that is a `zubov_bench.models.protocols.LyapunovModel` (Zubov-Net,
stable, or a hand-built model). Everything is one batch:
the whole grid is integrated at once. This is analysis: reports/roa_plot.py only draws its result,
and evaluation/alignment.py reuses it for the PRoA-RoA IoU of any 2-D Lyapunov model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import UserError
from ..models.ode import SolverConfig
from ..models.protocols import require_lyapunov_model


@dataclass
class RoAResult:
    xs: np.ndarray  # (nx,) grid abscissae
    ys: np.ndarray  # (ny,)
    roa: np.ndarray  # (ny, nx) index of the equilibrium reached, -1 for none
    lyapunov: np.ndarray  # (K, ny, nx) V_k on the grid
    level: float  # c: PRoA_k = {V_k < c}
    iou: np.ndarray  # (K,) IoU(PRoA_k, RoA_k) on the grid
    proa_in_roa: np.ndarray  # (K,) share of PRoA_k whose flow reaches e_k
    horizon: float
    tol: float
    eq_max_real_eig: np.ndarray | None = None  # (K,) largest Re(eigenvalue) of df/dz at each e_k

    @property
    def proa(self) -> np.ndarray:
        return self.lyapunov < self.level

    @property
    def mean_iou(self) -> float:
        return float(np.nanmean(self.iou))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return float(self.xs[0]), float(self.xs[-1]), float(self.ys[0]), float(self.ys[-1])

    def summary(self) -> dict:
        as_list = lambda a: [None if np.isnan(v) else round(float(v), 4) for v in a]  # noqa: E731
        return {"iou": as_list(self.iou), "mean_iou": round(self.mean_iou, 4),
                "proa_in_roa": as_list(self.proa_in_roa), "unassigned": round(float((self.roa < 0).mean()), 4),
                "extent": self.extent, "resolution": [len(self.xs), len(self.ys)], "level": self.level,
                "horizon": self.horizon, "tol": self.tol,
                "eq_max_real_eig": None if self.eq_max_real_eig is None else as_list(self.eq_max_real_eig)}


def check_roa_model(model) -> None:
    require_lyapunov_model(model, "RoA plots")
    if model.equilibria.shape[-1] != 2:
        raise UserError(f"RoA plots need a 2-D state (d = 2), got d = {model.equilibria.shape[-1]}")


def grid_states(extent, resolution: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    x0, x1, y0, y1 = extent
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx), rows along y
    return xs, ys, torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)


def default_extent(points: torch.Tensor, equilibria: torch.Tensor, pad: float = 0.15):
    """Bounding box of the feature states and the equilibria, padded by `pad` of its size."""
    pts = torch.cat([points.detach().reshape(-1, 2), equilibria.detach().reshape(-1, 2)])
    lo, hi = pts.min(0).values, pts.max(0).values
    margin = pad * (hi - lo).clamp_min(1e-3)
    lo, hi = (lo - margin).tolist(), (hi + margin).tolist()
    return lo[0], hi[0], lo[1], hi[1]


def default_tol(equilibria: torch.Tensor) -> float:
    """A quarter of the smallest distance between two equilibria."""
    eq = equilibria.detach()
    if len(eq) < 2:
        return 0.1
    dist = torch.cdist(eq, eq).masked_fill(torch.eye(len(eq), dtype=torch.bool, device=eq.device), float("inf"))
    return 0.25 * float(dist.min())


def fixed_step_solver(model, horizon: float, steps: int) -> SolverConfig:
    """The model's solver settings, but RK4 with `steps` steps over [0, horizon] and no adjoint."""
    if isinstance(getattr(model, "solver", None), SolverConfig):
        return replace(model.solver, method="rk4", steps=steps, T=horizon, adjoint=False)
    return SolverConfig("rk4", steps, T=horizon)


@torch.no_grad()
def flow_endpoints(model, states: torch.Tensor, horizon: float, steps: int) -> torch.Tensor:
    with model.using_solver(fixed_step_solver(model, horizon, steps)):
        return model.solve(states)


def assign_to_equilibria(end: torch.Tensor, equilibria: torch.Tensor, tol: float) -> torch.Tensor:
    """Index of the equilibrium within `tol` of each end state, or -1 (none, or a non-finite state)."""
    dist = torch.cdist(end, equilibria.detach().to(end))
    nearest_dist, nearest = dist.min(1)
    ok = torch.isfinite(end).all(1) & (nearest_dist <= tol)
    return torch.where(ok, nearest, torch.full_like(nearest, -1))


def region_iou(proa: np.ndarray, roa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: IoU of PRoA_k and RoA_k, and the share of PRoA_k inside RoA_k (nan if empty)."""
    reach = roa[None] == np.arange(len(proa))[:, None, None]
    inter = (proa & reach).sum((1, 2)).astype(float)
    union = (proa | reach).sum((1, 2)).astype(float)
    size = proa.sum((1, 2)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union, inter / size


def equilibrium_jacobians(model) -> torch.Tensor:
    """df/dz at every e_k, shape (K, d, d), for any state size d."""
    field = lambda z: model.vector_field(z[None])[0]  # noqa: E731
    with torch.enable_grad():
        return torch.func.vmap(torch.func.jacrev(field))(model.equilibria.detach()).detach()


def max_real_eigenvalues(model) -> torch.Tensor:
    """Largest real part of the Jacobian's eigenvalues at each e_k, shape (K,) (< 0: locally attracting)."""
    return torch.linalg.eigvals(equilibrium_jacobians(model)).real.max(-1).values


def equilibrium_stability(model) -> np.ndarray | None:
    return max_real_eigenvalues(model).cpu().numpy() if hasattr(model, "vector_field") else None


@torch.no_grad()
def compute_roa(model, extent, resolution: int = 200, horizon: float = 20.0, steps: int = 400,
                tol: float | None = None, level: float | None = None) -> RoAResult:
    """Integrate every grid state for `horizon` with RK4 and compare the basins with {V_k < c}."""
    check_roa_model(model)
    level = float(model.cfg.level if level is None else level)
    tol = default_tol(model.equilibria) if tol is None else tol
    xs, ys, states = grid_states(extent, resolution)
    states = states.to(model.equilibria)  # the model's device and dtype
    end = flow_endpoints(model, states, horizon, steps)
    roa = assign_to_equilibria(end, model.equilibria, tol).cpu().numpy().reshape(len(ys), len(xs))
    v = model.lyapunov(states).T.reshape(-1, len(ys), len(xs)).cpu().numpy()
    iou, inside = region_iou(v < level, roa)
    return RoAResult(xs, ys, roa, v, level, iou, inside, horizon, tol, equilibrium_stability(model))
