"""A deterministic L2 certificate for models that classify by convex class Lyapunov functions (Zubov-Net).

The model predicts p = argmin_k V_k(z(T)), z(0) = phi(x), PRoA_k = {z : V_k(z) < c}. For an input x
with prediction p, the certified radius rho = r / L_stem rests on (the proof is in docs/certify.md):
  (a) L_stem, a sound Lipschitz bound of phi, normalisation included (models/lipschitz.py):
      ||x' - x|| <= rho  =>  ||phi(x') - z0|| <= r;
  (b) a sound bound A_p on the Lipschitz constant of V_p's core (the network part, without the
      quadratic term), from the weights alone (`core_lipschitz`): on the ball B(z0, r),
      V_p(z0 + u) <= V_p(z0) + A_p r + q (2 ||z0 - e_p|| r + r^2), and r is the largest radius that
      keeps this below c, so B(z0, r) lies in PRoA_p;
  (c) V_k >= q ||z - e_k||^2 (the core is >= 0), so PRoA_k lies in the open ball B(e_k, sqrt(c/q)):
      PRoA_p and PRoA_j are disjoint when ||e_p - e_j|| >= 2 sqrt(c/q) (proven for such pairs);
  (d) the flow keeps PRoA_p forward invariant, so z(T) in PRoA_p, where V_p < c <= V_j for j != p
      and the prediction is p. The model is only trained for this: it is NUMERICALLY CHECKED, NOT
      PROVEN, by solving the model's own (RK4) flow from points of B(z0, r) -- random points and a
      feature-space PGD that tries to push V_p(z(t)) up to c or the prediction away from p; where
      the check fails, r is halved (at most FLOW_HALVINGS times), then the example abstains.
With classify_at=z0 the prediction is argmin_k V_k(z(0)) and (d) is not needed: the certificate is
sound whenever (c) is proven. Everything is computed in float64 on a copy of the model; floating
point rounding is covered by a relative margin of 1e-6 on r.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ..errors import UserError
from ..models.lipschitz import ROUNDING, stem_lipschitz
from ..models.protocols import is_lyapunov_model

LYAPUNOV_LABEL = "lyapunov certificate"
FLOW_NUMERIC = "numerically checked, not proven"
FLOW_NOT_NEEDED = "not needed (classify_at=z0)"
FLOW_HALVINGS = 3
MARGIN = 1.0 - 1e-6  # shrink of r that covers float64 rounding in V, ||z0 - e||, and the root


def certifiable_reason(model) -> str | None:
    """Why this model cannot get a Lyapunov certificate, or None if it can (decided by traits)."""
    if not is_lyapunov_model(model):
        return "it has no Lyapunov function (has_lyapunov and the LyapunovModel members)"
    lyap = getattr(model, "lyap", None)
    if lyap is None or not hasattr(lyap, "_weights") or getattr(getattr(lyap, "cfg", None), "kind", "") != "picnn":
        return "its Lyapunov function is not an input-convex LyapunovNet (lyap_kind=picnn) whose gradient can be bounded"
    if not hasattr(model, "logits_from_lyapunov"):
        return "it does not classify by -V_k (logits_from_lyapunov)"
    return None


def require_certifiable(model, path: str = "") -> None:
    reason = certifiable_reason(model)
    if reason:
        where = f"{path} ({type(model).__name__})" if path else type(model).__name__
        raise UserError(f"--method lyapunov cannot certify {where}: {reason}; use --method smoothing")


@torch.no_grad()
def core_lipschitz(lyap) -> torch.Tensor:
    """Per class k, an upper bound on the Lipschitz constant of V_k - q ||z - e_k||^2 over all of R^d.

    The convex path is s_i = softplus(A_i zc + b_i + M_i^T s_{i-1}), A_i = W_i diag(d a_i), with
    softplus' in [0, 1] and mixing weights M_i >= 0; G = w . s_L with w >= 0. Two sound bounds of
    sup ||grad G||, the smaller taken: by operator norms (||J_i|| <= ||A_i|| + ||M_i|| ||J_{i-1}||,
    ||grad G|| <= ||w|| ||J_L||) and by entrywise absolute values (|J_i| <= |A_i| + M_i^T |J_{i-1}|,
    |grad G| <= |J_L|^T w). ReHU has slope in [0, 1], so the ReHU core is bounded by sup ||grad G||;
    the Bregman core relu(G(zc) - G(0) - grad G(0) . zc) by sup ||grad G|| + ||grad G(0)||.
    """
    ctx, _, grad_eq = lyap._constants()
    layers, w_out = lyap._weights(ctx, None)
    norm_bound = abs_bound = None
    for scale, w_t, _, mix in layers:
        a = w_t.T[None] * scale[:, None, :]  # (K, h, d): W_i diag(scale_k)
        a_norm = torch.linalg.matrix_norm(a, ord=2)
        if mix is None:
            norm_bound, abs_bound = a_norm, a.abs()
        else:  # pre_i gets s_{i-1} @ mix, so its Jacobian gets mix^T J_{i-1}
            norm_bound = a_norm + torch.linalg.matrix_norm(mix.T, ord=2) * norm_bound
            abs_bound = a.abs() + mix.T[None] @ abs_bound
    by_norm = w_out.norm() * norm_bound
    by_abs = (abs_bound.transpose(1, 2) @ w_out).norm(dim=1)
    lip_g = torch.minimum(by_norm, by_abs)
    if lyap.cfg.form == "bregman":
        return lip_g + grad_eq.norm(dim=1)
    return lip_g


def proa_ball_radius(level: float, quad: float) -> float:
    """V_k >= q ||z - e_k||^2, so PRoA_k = {V_k < c} lies in the open ball of this radius around e_k."""
    return math.sqrt(level / quad) if quad > 0 else math.inf


def disjoint_classes(equilibria: torch.Tensor, level: float, quad: float) -> np.ndarray:
    """Per class p: every other PRoA is proven disjoint from PRoA_p (their bounding balls do not meet)."""
    dist = torch.cdist(equilibria, equilibria).cpu().numpy()
    np.fill_diagonal(dist, np.inf)
    return np.all(dist >= 2 * proa_ball_radius(level, quad), axis=1)


def feature_radius(v0: np.ndarray, dist0: np.ndarray, lip: np.ndarray, level: float, quad: float) -> np.ndarray:
    """The largest r with v0 + lip r + q (2 dist0 r + r^2) <= c (0 where v0 >= c), shrunk by MARGIN."""
    gap = level - v0
    a = lip + 2 * quad * dist0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = 2 * gap / (a + np.sqrt(a * a + 4 * quad * np.maximum(gap, 0)))  # the positive root, stably
    return np.where(gap > 0, np.maximum(r, 0) * MARGIN, 0.0)


def _float64_copy(model):
    twin = copy.deepcopy(model).double().eval()
    twin.requires_grad_(False)
    return twin


def _flow_violation(model, z0: torch.Tensor, cls: torch.Tensor, level: float) -> torch.Tensor:
    """Per row (> 0: a violation): max(max over the solver grid of V_p(z(t)) - c,
    V_p(z(T)) - min_{j != p} V_j(z(T))). Needs the flow to stay in PRoA_p and to predict p."""
    times = model.grid(max(int(getattr(model.cfg, "steps", 10)) + 1, 2)).to(z0)
    zs = model.solve(z0, times)  # (t, N, d)
    v_own = torch.stack([model.lyapunov(z, cls) for z in zs])  # (t, N)
    v_end = model.lyapunov(zs[-1])  # (N, K)
    others = v_end.scatter(1, cls[:, None], math.inf).min(1).values
    return torch.maximum(v_own.max(0).values - level, v_end.gather(1, cls[:, None]).squeeze(1) - others)


def check_flow(model, z0: torch.Tensor, cls: torch.Tensor, radius: torch.Tensor, level: float,
               samples: int = 8, steps: int = 10, seed: int = 0) -> torch.Tensor:
    """Per row: no violation found from `samples` random points of B(z0, r) (half on its sphere) and
    from a feature-space PGD (`steps` steps) that maximises the violation inside the ball."""
    g = torch.Generator().manual_seed(seed)
    n, d = z0.shape
    ok = torch.ones(n, dtype=torch.bool, device=z0.device)
    r = radius.to(z0)[:, None]
    dirs = torch.randn(max(samples, 1), n, d, generator=g, dtype=z0.dtype)  # CPU draws: the same on any device
    dirs = (dirs / dirs.norm(dim=2, keepdim=True)).to(z0.device)
    scale = torch.ones(samples, n, 1, dtype=z0.dtype)
    scale[samples // 2:] = torch.rand(samples - samples // 2, n, 1, generator=g, dtype=z0.dtype)
    scale = scale.to(z0.device)
    if samples:
        with torch.no_grad():
            points = (z0[None] + r[None] * dirs[:samples] * scale).reshape(-1, d)
            ok &= ~(_flow_violation(model, points, cls.repeat(samples), level).reshape(samples, n) > 0).any(0)
    delta = dirs[0] * r * 0.5
    step = 2.5 * r / max(steps, 1)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = _flow_violation(model, z0 + delta, cls, level)
            grad, = torch.autograd.grad(loss.sum(), delta)
        ok &= ~(loss.detach() > 0)
        grad = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-300)
        delta = delta.detach() + step * grad
        delta = delta * torch.clamp(r / delta.norm(dim=1, keepdim=True).clamp_min(1e-300), max=1.0)
    with torch.no_grad():
        ok &= ~(_flow_violation(model, z0 + delta, cls, level) > 0)
    return ok


def lyapunov_certify(model, x: torch.Tensor, y: torch.Tensor, flow_samples: int = 8, flow_steps: int = 10,
                     seed: int = 0, lipschitz=None) -> dict[str, np.ndarray]:
    """Per row: prediction (-1 = abstain), certified input-space L2 radius, the feature-space radius
    from (a)-(c) before and after the flow check, V_p(z0), disjointness proven, flow check passed."""
    require_certifiable(model)
    twin = _float64_copy(model)
    lip_stem = (lipschitz or stem_lipschitz(twin)).value
    cfg, quad = twin.cfg, float(twin.lyap.cfg.quad)
    level = float(getattr(cfg, "level", 1.0))
    xd = x.detach().to(next(twin.parameters()).device, torch.float64)
    with torch.no_grad():
        prediction = model(x).argmax(1).cpu()  # the deployed (float32) model's own prediction
        z0 = twin.features(xd)
        v0 = twin.lyapunov(z0, prediction.to(z0.device)).cpu().numpy()
        dist0 = (z0 - twin.equilibria.index_select(0, prediction.to(z0.device))).norm(dim=1).cpu().numpy()
        lip = core_lipschitz(twin.lyap).cpu().numpy()[prediction.numpy()]
    disjoint = disjoint_classes(twin.equilibria.detach(), level, quad)[prediction.numpy()]
    r_sound = feature_radius(v0, dist0, lip, level, quad)
    r = r_sound.copy()
    flow_ok = np.ones(len(x), bool)
    if getattr(cfg, "classify_at", "zT") != "z0":
        pending = r > 0
        for halving in range(FLOW_HALVINGS + 1):
            rows = np.flatnonzero(pending)
            if len(rows) == 0:
                break
            sel = torch.from_numpy(rows)
            ok = check_flow(twin, z0[sel.to(z0.device)], prediction[sel].to(z0.device),
                            torch.from_numpy(r[rows]), level, flow_samples, flow_steps, seed + halving).cpu().numpy()
            pending[rows[ok]] = False
            if halving < FLOW_HALVINGS:
                r[rows[~ok]] /= 2
            else:
                r[rows[~ok]] = 0.0
        flow_ok = (r == r_sound)
    certified = r > 0
    radius = np.where(certified, r / lip_stem, 0.0)
    pred = np.where(certified, prediction.numpy(), -1)
    return {"prediction": pred.astype(np.int64), "radius": radius.astype(np.float64),
            "feature_radius_sound": r_sound.astype(np.float64), "feature_radius": r.astype(np.float64),
            "v0": v0.astype(np.float64), "disjoint": disjoint, "flow_ok": flow_ok,
            "correct": certified & (pred == y.cpu().numpy())}


def model_facts(model, lipschitz=None) -> dict:
    """What every example's certificate shares: the stem bound, c, q, which PRoAs are proven disjoint."""
    twin = _float64_copy(model)
    bound = lipschitz or stem_lipschitz(twin)
    level, quad = float(getattr(twin.cfg, "level", 1.0)), float(twin.lyap.cfg.quad)
    disjoint = disjoint_classes(twin.equilibria.detach(), level, quad)
    flow = FLOW_NOT_NEEDED if getattr(twin.cfg, "classify_at", "zT") == "z0" else FLOW_NUMERIC
    return {"stem_lipschitz": float(bound.value), "level": level, "quad": quad,
            "disjointness": "proven" if disjoint.all() else
            f"not proven for classes {[int(k) for k in np.flatnonzero(~disjoint)]}",
            "flow_invariance": flow}


# --- soundness check: attack the deployed model inside each certified ball --------------------------
def attack_within(model, x: torch.Tensor, y: torch.Tensor, radius, steps: int = 50, restarts: int = 5,
                  seed: int = 0) -> torch.Tensor:
    """L2 PGD with random restarts on the margin loss max_{j != y} l_j - l_y, inside per-row balls of
    `radius`, images kept in [0, 1]; returns the first point found misclassified (else the last)."""
    g = torch.Generator().manual_seed(seed)
    radius = torch.as_tensor(np.asarray(radius), dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1))).to(x.device)
    best, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    step = 2.5 * radius / steps

    def project(delta):
        norms = delta.flatten(1).norm(dim=1).reshape(radius.shape).clamp_min(1e-12)
        delta = delta * torch.minimum(torch.ones_like(norms), radius / norms)
        return (x + delta).clamp(0, 1) - x

    for _ in range(restarts):
        start = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
        start = start / start.flatten(1).norm(dim=1).reshape(radius.shape)
        delta = project(start * radius * torch.rand(radius.shape, generator=g, dtype=x.dtype).to(x.device))
        for _ in range(steps):
            delta.requires_grad_(True)
            logits = model(x + delta)
            own = logits.gather(1, y[:, None]).squeeze(1)
            other = logits.scatter(1, y[:, None], -math.inf).max(1).values
            grad, = torch.autograd.grad((other - own).sum(), delta)
            wrong = (other > own).detach()  # this iterate is already misclassified: keep it
            new = wrong & ~found
            best[new], found = (x + delta)[new].detach(), found | wrong
            norms = grad.flatten(1).norm(dim=1).reshape(radius.shape).clamp_min(1e-12)
            delta = project(delta.detach() + step * grad / norms)
        with torch.no_grad():
            wrong = model(x + delta).argmax(1) != y
            new = wrong & ~found
            best[new], found = (x + delta)[new], found | wrong
    return best


def fooled_lyapunov_certificates(model, x, y, certificate: dict[str, np.ndarray], **attack) -> np.ndarray:
    """Per row: certified correct at radius r, yet the attack found a misclassified point within r."""
    rows = np.flatnonzero(certificate["correct"] & (certificate["radius"] > 0))
    fooled = np.zeros(len(x), bool)
    if len(rows) == 0:
        return fooled
    sel = torch.from_numpy(rows).to(x.device)
    x_adv = attack_within(model, x[sel], y[sel], certificate["radius"][rows], **attack)
    distance = (x_adv - x[sel]).flatten(1).norm(dim=1).detach().cpu().numpy()
    assert np.all(distance <= certificate["radius"][rows] * (1 + 1e-5) + 1e-7), "the attack left its ball"
    with torch.no_grad():
        fooled[rows] = (model(x_adv).argmax(1) != y[sel]).cpu().numpy()
    return fooled
