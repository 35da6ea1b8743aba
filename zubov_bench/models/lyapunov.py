"""Class-conditioned Lyapunov functions V_k(z), convex in z, and parallel boundary sampling.

G(z, k) is a partially input-convex network (docs/zubov-net.md §2.2): the class context u_i is
unconstrained; the convex path s_i sees the centred state z - e_k only through affine maps,
scaled by a softmax attention computed from the context alone, and combined with the previous
layer through row-softmax (non-negative) weights, then a convex non-decreasing softplus.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwad
import torch.nn.functional as F
from torch import nn

from .layers import rehu, unit_rows


@dataclass
class LyapunovConfig:
    layers: int = 2
    width: int = 128
    context: str = "embedding"  # embedding | equilibrium  (what u_0 is)
    context_dim: int = 32
    attention: bool = True  # False: plain input-convex network (d * a_i = 1)
    kind: str = "picnn"  # picnn | mlp (non-convex ablation)
    form: str = "rehu"  # rehu | bregman
    rehu_delta: float = 0.1
    quad: float = 0.01  # epsilon in + eps * ||z - e_k||^2


class LyapunovNet(nn.Module):
    """V(z)[..., k] for all classes, or V(z, k) for one assigned class per point."""

    def __init__(self, equilibria: torch.Tensor, cfg: LyapunovConfig, learn_equilibria: bool = False):
        super().__init__()
        k, d = equilibria.shape
        self.cfg, self.k, self.d = cfg, k, d
        if learn_equilibria:
            self.equilibria = nn.Parameter(equilibria.clone())
        else:
            self.register_buffer("equilibria", equilibria.clone())
        h, p = cfg.width, (d if cfg.context == "equilibrium" else cfg.context_dim)
        if cfg.context == "embedding":
            self.embed = nn.Parameter(torch.randn(k, p) / p**0.5)
        L = cfg.layers
        self.ctx_layers = nn.ModuleList(nn.Linear(p, p) for _ in range(L - 1))  # U~_i, b~_i
        self.attn = nn.ModuleList(nn.Linear(p, d) for _ in range(L))  # A_i, c_i
        self.Q = nn.ModuleList(nn.Linear(p, h) for _ in range(L))  # Q_i, beta_i
        self.W = nn.ParameterList(nn.Parameter(torch.randn(h, d) / d**0.5) for _ in range(L))
        self.Pi = nn.ParameterList(nn.Parameter(torch.randn(h, h) * 0.1) for _ in range(L - 1))
        self.w_out = nn.Parameter(torch.full((h,), -2.0))
        self.b_out = nn.Parameter(torch.zeros(()))
        if cfg.kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear(d + p, h), nn.Softplus(), nn.Linear(h, h), nn.Softplus(),
                                     nn.Linear(h, 1))

    def context(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-class, per-layer (input scaling d*a_i, affine offset Q_i u_i + beta_i); independent of z."""
        u = self.embed if self.cfg.context == "embedding" else self.equilibria
        out = []
        for i in range(self.cfg.layers):
            if self.cfg.attention:
                scale = self.d * torch.softmax(self.attn[i](u), dim=-1)
            else:
                scale = torch.ones(self.k, self.d, device=u.device, dtype=u.dtype)
            out.append((scale, self.Q[i](u)))
            if i < self.cfg.layers - 1:
                u = torch.relu(self.ctx_layers[i](u))
        return out

    def _g(self, zc: torch.Tensor, ctx, cls: torch.Tensor | None) -> torch.Tensor:
        """G on centred states; zc is (N, K, d) for all classes or (N, d) with classes `cls`."""
        if self.cfg.kind == "mlp":
            u = self.embed if self.cfg.context == "embedding" else self.equilibria
            u = (u if cls is None else u.index_select(0, cls)).expand(*zc.shape[:-1], -1)
            return self.mlp(torch.cat([zc, u], dim=-1)).squeeze(-1)
        return self._convex_path(zc, self._weights(ctx, cls))

    def _weights(self, ctx, cls: torch.Tensor | None):
        """The convex path's z-independent factors, per layer, picked for the points' classes."""
        pick = (lambda t: t) if cls is None else (lambda t: t.index_select(0, cls))
        layers = [(pick(scale), self.W[i].T, pick(offset),
                   None if i == 0 else torch.softmax(self.Pi[i - 1], dim=1).T)
                  for i, (scale, offset) in enumerate(ctx)]
        return layers, F.softplus(self.w_out)

    def _convex_path(self, zc: torch.Tensor, weights) -> torch.Tensor:
        layers, w_out = weights
        s = None
        for scale, w_t, offset, mix in layers:
            pre = (scale * zc) @ w_t + offset
            if mix is not None:
                pre = pre + s @ mix
            s = F.softplus(pre)
        return s @ w_out + self.b_out

    def _constants(self):
        """What V needs that does not depend on z: the class context, and G and grad G at e_k."""
        ctx = self.context()
        zeros = torch.zeros(self.k, self.d, device=self.equilibria.device, dtype=self.equilibria.dtype)
        every_class = torch.arange(self.k, device=zeros.device)
        if self.cfg.form != "bregman":
            return ctx, self._g(zeros, ctx, every_class), None
        with torch.enable_grad():
            z_eq = zeros.requires_grad_(True)
            g_eq = self._g(z_eq, ctx, every_class)
            grad_eq = torch.autograd.grad(g_eq.sum(), z_eq, create_graph=True)[0]
        return ctx, g_eq, grad_eq

    def _v(self, zc: torch.Tensor, cls: torch.Tensor | None, constants) -> torch.Tensor:
        ctx, g_eq, grad_eq = constants
        g = self._g(zc, ctx, cls)
        if cls is not None:
            g_eq = g_eq.index_select(0, cls)
            grad_eq = None if grad_eq is None else grad_eq.index_select(0, cls)
        return self._from_g(g, zc, g_eq, grad_eq)

    def _from_g(self, g, zc, g_eq, grad_eq) -> torch.Tensor:
        """V from G(z), G(e_k) and, for the Bregman form, grad G(e_k)."""
        if self.cfg.form == "bregman":
            core = F.relu(g - g_eq - (grad_eq * zc).sum(-1))  # exact convexity makes this >= 0; guards round-off
        else:
            core = rehu(g - g_eq, self.cfg.rehu_delta)
        return core + self.cfg.quad * (zc * zc).sum(-1)

    def forward(self, z: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        """V for every class, shape (N, K); or, given `cls` (N,), V_cls(z), shape (N,)."""
        eq = self.equilibria
        zc = z.unsqueeze(-2) - eq if cls is None else z - eq.index_select(0, cls)
        return self._v(zc, cls, self._constants())

    def jvp(self, z: torch.Tensor, dz: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V_cls(z) and its derivative along dz, in one forward pass (forward-mode AD).

        The convex path carries its tangents by hand with the formulas forward-mode autograd
        uses, which gives the same values with far less per-op overhead; other kinds use autograd.
        """
        if self.cfg.kind == "mlp":
            with fwad.dual_level():
                return fwad.unpack_dual(self(fwad.make_dual(z, dz), cls))
        ctx, g_eq, grad_eq = self._constants()
        (layers, w_out), zc = self._weights(ctx, cls), z - self.equilibria.index_select(0, cls)
        s = ds = None
        for scale, w_t, offset, mix in layers:
            pre, dpre = (scale * zc) @ w_t + offset, (dz * scale) @ w_t
            if mix is not None:
                pre, dpre = pre + s @ mix, dpre + ds @ mix
            s, ds = F.softplus(pre), torch.ops.aten.softplus_backward(dpre, pre, 1.0, 20.0)
        g, dg = s @ w_out + self.b_out, ds @ w_out
        g_eq = g_eq.index_select(0, cls)
        if self.cfg.form == "bregman":
            grad_eq = grad_eq.index_select(0, cls)
            t, dt = g - g_eq - (grad_eq * zc).sum(-1), dg - (dz * grad_eq).sum(-1)
            core = F.relu(t)
            dcore = torch.ops.aten.threshold_backward(dt, core, 0.0)
        else:
            delta = self.cfg.rehu_delta
            t = g - g_eq
            core = rehu(t, delta)
            dcore = torch.where(t <= 0, torch.zeros_like(t),
                                torch.where(t <= delta, (dg * t + dg * t) / (2 * delta), dg))
        quad = self.cfg.quad
        return core + quad * (zc * zc).sum(-1), dcore + (dz * zc + dz * zc).sum(-1) * quad

    def of_offset(self, cls: torch.Tensor):
        """u -> V_cls(e_cls + u), with everything independent of u computed once for many calls."""
        constants = self._constants()
        if self.cfg.kind == "mlp":
            return lambda offset: self._v(offset, cls, constants)
        ctx, g_eq, grad_eq = constants
        weights = self._weights(ctx, cls)
        g_eq = g_eq.index_select(0, cls)
        grad_eq = None if grad_eq is None else grad_eq.index_select(0, cls)
        return lambda offset: self._from_g(self._convex_path(offset, weights), offset, g_eq, grad_eq)


@dataclass
class BoundaryConfig:
    enabled: bool = True
    rays: int = 32  # M rays per class
    data_fraction: float = 0.5  # share of rays that point at training states
    root: str = "illinois"  # illinois (regula falsi) | bisection: same crossing, see `rounds`
    rounds: int = 8  # refinement rounds; bisection needs 20 for the float32 precision illinois reaches in 6
    r0: float = 1.0
    max_doublings: int = 16
    shells: bool = True
    shell_delta: float = 0.05


@torch.no_grad()
def sample_boundary(lyap: LyapunovNet, level: float, cfg: BoundaryConfig,
                    states: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Points b with V_k(b) = level on every PRoA boundary, by batched bracketing and root finding.

    All K*M rays are one batch; the only loops run over doubling and refinement rounds.
    Returns (boundary points, their classes, shell points, shell classes).
    """
    eq = lyap.equilibria.detach()
    k, d = eq.shape
    dev, dt = eq.device, eq.dtype
    n_data = int(round(cfg.rays * cfg.data_fraction)) if states is not None and len(states) else 0
    dirs = torch.randn(k, cfg.rays - n_data, d, device=dev, dtype=dt, generator=generator)
    if n_data:
        pick = torch.randint(len(states), (k, n_data), device=dev, generator=generator)
        dirs = torch.cat([dirs, states.detach()[pick] - eq[:, None, :]], dim=1)
    u = unit_rows(dirs).reshape(k * cfg.rays, d)
    cls = torch.arange(k, device=dev).repeat_interleave(cfg.rays)
    base = eq[cls]
    v_along = lyap.of_offset(cls)

    def gap(r):  # V_k(e_k + r u) - c: convex in r, -c at r = 0
        return v_along(r[:, None] * u) - level

    lo, hi, g_lo, g_hi = _bracket(v_along, u, level, cfg)
    crossed = g_hi >= 0
    refine = _illinois if cfg.root == "illinois" else _bisect
    r = refine(gap, lo, hi, g_lo, g_hi, cfg.rounds)[crossed]
    u, cls, base = u[crossed], cls[crossed], base[crossed]
    points = base + r[:, None] * u
    if not cfg.shells:
        return points, cls, points[:0], cls[:0]
    shells = torch.cat([base + ((1 - cfg.shell_delta) * r)[:, None] * u,
                        base + ((1 + cfg.shell_delta) * r)[:, None] * u])
    return points, cls, shells, cls.repeat(2)


BRACKET_BATCH = 5  # radii r0 * 2^j tried per call: trained models cross by j = 4 (8 rays of 10 checkpoints)


def _bracket(v_along, u: torch.Tensor, level: float, cfg: BoundaryConfig):
    """Per ray, the first radius r0 * 2^j (j <= max_doublings) where V_k - c stops being negative,
    the radius before it (0 for j = 0), and V_k - c at both: (lo, hi, gap(lo), gap(hi)).

    The same bracket as doubling r_hi one V evaluation at a time, but BRACKET_BATCH radii of
    every ray go into one batched evaluation. A ray that never crosses ends with gap(hi) < 0 or NaN.
    """
    radii = [torch.zeros(1, dtype=u.dtype, device=u.device)]
    gaps = [torch.full((len(u), 1), -level, dtype=u.dtype, device=u.device)]
    tried, total = 0, max(cfg.max_doublings, 0) + 1  # r0 itself, then the doublings
    while tried < total:
        j = torch.arange(tried, min(tried + BRACKET_BATCH, total), dtype=u.dtype, device=u.device)
        radii.append(cfg.r0 * 2.0**j)
        tried += len(j)
        gaps.append((v_along(radii[-1][:, None, None] * u) - level).T)  # (rays, radii)
        stop = ~(torch.cat(gaps[1:], 1) < 0)  # V_k >= c, or NaN: doubling stops there
        if bool(stop.any(1).all()):
            break
    radii, gaps = torch.cat(radii), torch.cat(gaps, 1)
    last = torch.full_like(stop[:, 0], stop.shape[1] - 1, dtype=torch.long)
    first = torch.where(stop.any(1), stop.int().argmax(1), last)
    pick = lambda j: gaps.gather(1, j[:, None]).squeeze(1)  # noqa: E731
    return radii[first], radii[first + 1], pick(first), pick(first + 1)


def _bisect(f, lo, hi, f_lo, f_hi, rounds: int) -> torch.Tensor:
    """Root of f on [lo, hi], where f(lo) < 0 <= f(hi), by `rounds` halvings."""
    for _ in range(rounds):
        mid = (lo + hi) / 2
        up = f(mid) >= 0
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
    return (lo + hi) / 2


def _illinois(f, lo, hi, f_lo, f_hi, rounds: int) -> torch.Tensor:
    """Bracketed regula falsi with the Illinois fix: superlinear on the convex rays of V_k."""
    hi_moved = None  # which end moved in the previous round (None before the first)
    for _ in range(rounds):
        width = f_hi - f_lo
        x = torch.where(width > 0, lo - f_lo * (hi - lo) / width.clamp_min(1e-30), (lo + hi) / 2)
        x = torch.minimum(torch.maximum(x, lo), hi)
        f_x = f(x)
        up = f_x >= 0
        if hi_moved is not None:  # Illinois: an end that survives twice has its value halved
            f_lo = torch.where(hi_moved, f_lo / 2, f_lo)
            f_hi = torch.where(hi_moved, f_hi, f_hi / 2)
        f_lo, f_hi = torch.where(up, f_lo, f_x), torch.where(up, f_x, f_hi)
        lo, hi = torch.where(up, lo, x), torch.where(up, x, hi)
        hi_moved = up
    return torch.where(f_hi.abs() <= f_lo.abs(), hi, lo)
