"""A deterministic L2 certificate for models that classify by convex class Lyapunov functions (Zubov-Net).

The model predicts p = argmin_k V_k(z(T)), z(0) = phi(x), PRoA_k = {z : V_k(z) < c}. For an input x
with prediction p, the certified radius rho = r / L_stem rests on (the proof is in docs/certify.md):
  (a) L_stem, a sound Lipschitz bound of phi, normalisation included (models/lipschitz.py):
      ||x' - x|| <= rho  =>  ||phi(x') - z0|| <= r;
  (b) a sound bound A_p on the gradient of V_p's core (the network part, without the quadratic
      term) over the ball B(z0, r): V_p(z0 + u) <= V_p(z0) + A_p r + q (2 ||z0 - e_p|| r + r^2) + s_p,
      and r is the largest radius that keeps this below c, so B(z0, r) lies in PRoA_p. A_p is global,
      from the weights alone (`core_lipschitz`), or local, by interval bound propagation over the
      ball (`local_core_gradient`, searched by bisection in `local_feature_radius`); the larger of
      the two radii is used. s_p (~1e-8) covers the step of torch's softplus at its threshold;
  (c) V_k >= q ||z - e_k||^2 (the core is >= 0), so PRoA_k lies in the open ball B(e_k, sqrt(c/q)):
      PRoA_p and PRoA_j are disjoint when ||e_p - e_j|| >= 2 sqrt(c/q) (proven for such pairs);
  (d) the flow keeps PRoA_p forward invariant, so z(T) in PRoA_p, where V_p < c <= V_j for j != p
      and the prediction is p. The model is only trained for this: it is NUMERICALLY CHECKED, NOT
      PROVEN, by solving the model's own (RK4) flow from points of B(z0, r) -- random points and a
      feature-space PGD that tries to push V_p(z(t)) up to c or the prediction away from p; where
      the check fails, r is halved (at most FLOW_HALVINGS times), then the example abstains.
With classify_at=z0 the prediction is argmin_k V_k(z(0)) and (d) is not needed: the certificate is
sound whenever (c) is proven. For a projected-decay model (`stable`: V = min_k V_k falls as
V' <= -alpha V everywhere by construction, head = nearest e_k) c is chosen so that (c) holds, and (d)
is proven for the exact flow; the RK4 solve is still checked numerically (docs/certify.md). Everything is computed in float64 on a copy of the model; floating
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
FLOW_EXACT_PROVEN = "proven for the exact flow (V' <= -alpha V by construction); the RK4 solve numerically checked"
FLOW_HALVINGS = 3
MARGIN = 1.0 - 1e-6  # shrink of r that covers float64 rounding in V, ||z0 - e||, and the root


def projected_decay(model) -> bool:
    """The `stable` kind (traits, not names): its field makes V = min_k V_k fall as V' <= -alpha V
    everywhere by construction, and its head predicts the nearest equilibrium."""
    return bool(getattr(model, "decay_by_construction", False)) and bool(
        getattr(model, "nearest_equilibrium_head", False))


def certifiable_reason(model) -> str | None:
    """Why this model cannot get a Lyapunov certificate, or None if it can (decided by traits)."""
    if not is_lyapunov_model(model):
        return "it has no Lyapunov function (has_lyapunov and the LyapunovModel members)"
    lyap = getattr(model, "lyap", None)
    if lyap is None or not hasattr(lyap, "_weights") or getattr(getattr(lyap, "cfg", None), "kind", "") != "picnn":
        return "its Lyapunov function is not an input-convex LyapunovNet (lyap_kind=picnn) whose gradient can be bounded"
    if not hasattr(model, "logits_from_lyapunov") and not projected_decay(model):
        return ("it neither classifies by -V_k (logits_from_lyapunov) nor has a field whose Lyapunov decay holds "
                "by construction with a nearest-equilibrium head (decay_by_construction, nearest_equilibrium_head)")
    return None


def certificate_level(model) -> float:
    """The c of PRoA_k = {V_k < c}. Zubov-Net: its trained cfg.level. A projected-decay model (`stable`)
    makes every sublevel set of V decay, so c is the certificate's choice: the largest with proven
    disjoint PRoAs, q (d_min / 2)^2 (d_min the closest two equilibria), shrunk by 1e-6 for rounding."""
    if hasattr(model, "logits_from_lyapunov") or not projected_decay(model):
        return float(getattr(model.cfg, "level", 1.0))
    eq = model.equilibria.detach().double()
    dist = torch.cdist(eq, eq) + torch.diag(torch.full((len(eq),), math.inf, dtype=eq.dtype, device=eq.device))
    return float(model.lyap.cfg.quad) * (float(dist.min()) / 2) ** 2 * MARGIN


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


SOFTPLUS_THRESHOLD = 20.0  # torch's softplus returns x itself above this (beta = 1)
SOFTPLUS_JUMP = 2.1e-9  # log1p(exp(-20)) ~ 2.06e-9: the size of that switch's step in s_i


@torch.no_grad()
def threshold_slack(lyap) -> torch.Tensor:
    """Per class, an upper bound on how much the softplus threshold's steps can raise G (and V) along
    any path: each unit's s_i can step by at most SOFTPLUS_JUMP, which reaches later layers through
    the mixing weights (>= 0) times softplus' <= 1, and G through w >= 0. Tiny (~1e-8); it makes the
    mean-value argument of the local bound exact for the function torch computes."""
    ctx, _, _ = lyap._constants()
    layers, w_out = lyap._weights(ctx, None)
    step = None
    for _, _, _, mix in layers:
        own = torch.full((w_out.shape[0],), SOFTPLUS_JUMP, dtype=w_out.dtype, device=w_out.device)
        step = own if mix is None else own + step @ mix
    return (step @ w_out).expand(lyap.k)


@torch.no_grad()
def local_core_gradient(lyap, zc0: torch.Tensor, cls: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Per row, an upper bound on ||grad core_p|| over the ball B(zc0, r) (zc0 = z0 - e_p, p = cls),
    by interval bound propagation (sound for the exact function; docs/certify.md, part (b)):
      * pre-activations: row j of A_i z ranges over A_i zc0 +- r ||(A_i)_j|| on the ball, and the
        mixing term s_{i-1} @ M_i over [s_lo @ M_i, s_hi @ M_i] (M_i >= 0, softplus increasing);
      * softplus' = sigmoid(pre) lies in [sigmoid(lo), sigmoid(hi)] (1 above the threshold);
      * the Jacobian J_i = D_i (A_i + M_i^T J_{i-1}) entrywise in an interval (D_i >= 0 diagonal),
        grad G = J_L^T w (w >= 0) in [J_lo^T w, J_hi^T w], minus grad G(e_p) for the Bregman form;
      * the core's slope (ReHU' or ReLU') lies in [0, 1], so ||grad core|| <= the norm of the box's
        farthest corner from 0, ||max(|lo|, |hi|)||."""
    ctx, _, grad_eq = lyap._constants()
    layers, w_out = lyap._weights(ctx, cls)
    r = radius.to(zc0)[:, None]
    s_lo = s_hi = j_lo = j_hi = None
    for scale, w_t, offset, mix in layers:
        a = w_t.T[None] * scale[:, None, :]  # (N, h, d): A_i = W_i diag(scale_p)
        centre = (scale * zc0) @ w_t + offset
        spread = r * a.norm(dim=2)
        lo, hi = centre - spread, centre + spread
        p_lo = p_hi = a
        if mix is not None:
            lo, hi = lo + s_lo @ mix, hi + s_hi @ mix
            mix_t = mix.T[None]
            p_lo, p_hi = a + mix_t @ j_lo, a + mix_t @ j_hi
        d_lo = torch.sigmoid(lo)[:, :, None]
        d_hi = torch.where(hi >= SOFTPLUS_THRESHOLD, torch.ones_like(hi), torch.sigmoid(hi))[:, :, None]
        j_lo = torch.where(p_lo >= 0, d_lo * p_lo, d_hi * p_lo)
        j_hi = torch.where(p_hi >= 0, d_hi * p_hi, d_lo * p_hi)
        s_lo, s_hi = torch.nn.functional.softplus(lo), torch.nn.functional.softplus(hi)
    g_lo = (j_lo.transpose(1, 2) @ w_out[:, None]).squeeze(2)
    g_hi = (j_hi.transpose(1, 2) @ w_out[:, None]).squeeze(2)
    if lyap.cfg.form == "bregman":
        eq_grad = grad_eq.index_select(0, cls)
        g_lo, g_hi = g_lo - eq_grad, g_hi - eq_grad
    return torch.maximum(g_lo.abs(), g_hi.abs()).norm(dim=1)


LOCAL_BISECTIONS = 40


@torch.no_grad()
def local_feature_radius(lyap, zc0: torch.Tensor, cls: torch.Tensor, v0: np.ndarray, level: float,
                         global_lip: np.ndarray, bisections: int = LOCAL_BISECTIONS) -> np.ndarray:
    """Per row, the largest r found with v0 + A(r) r + q (2 ||zc0|| r + r^2) + slack <= c, where
    A(r) = min(global bound, local_core_gradient on B(zc0, r)); A grows with r (the intervals nest),
    so this is a bisection. Every r returned was checked with A computed at that same r (0: none)."""
    quad = float(lyap.cfg.quad)
    dist0 = zc0.norm(dim=1).cpu().numpy()
    slack = threshold_slack(lyap).index_select(0, cls).cpu().numpy()
    lip_global = torch.from_numpy(global_lip).to(zc0)

    def fits(r: np.ndarray) -> np.ndarray:
        lip = torch.minimum(local_core_gradient(lyap, zc0, cls, torch.from_numpy(r)), lip_global).cpu().numpy()
        return v0 + slack + lip * r + quad * (2 * dist0 * r + r * r) <= level

    good = feature_radius(v0 + slack, dist0, global_lip, level, quad)  # fits: A(r) <= the global bound
    bad = feature_radius(v0 + slack, dist0, np.zeros_like(global_lip), level, quad) / MARGIN * (1 + 1e-9) + 1e-12
    good = np.where(fits(good), good, 0.0)
    for _ in range(bisections):
        mid = (good + bad) / 2
        ok = fits(mid)
        good, bad = np.where(ok, mid, good), np.where(ok, bad, mid)
    return np.where(v0 + slack < level, good * MARGIN, 0.0)


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
    max_{j != p} l_j(z(T)) - l_p(z(T))), l the model's logits. Needs the flow to stay in PRoA_p and to
    predict p."""
    times = model.grid(max(int(getattr(model.cfg, "steps", 10)) + 1, 2)).to(z0)
    zs = model.solve(z0, times)  # (t, N, d)
    v_own = torch.stack([model.lyapunov(z, cls) for z in zs])  # (t, N)
    logits = model.logits_from_state(zs[-1])  # (N, K): the model's own head (-V/tau, or nearest e_k)
    others = logits.scatter(1, cls[:, None], -math.inf).max(1).values
    return torch.maximum(v_own.max(0).values - level, others - logits.gather(1, cls[:, None]).squeeze(1))


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
                     seed: int = 0, lipschitz=None, local: bool = True) -> dict[str, np.ndarray]:
    """Per row: prediction (-1 = abstain), certified input-space L2 radius, the feature-space radius
    from (a)-(c) before and after the flow check (and the two sound radii of (b) it is the larger of:
    the global gradient bound's and the local one's; local=False skips the local bound), V_p(z0),
    disjointness proven, flow check passed."""
    require_certifiable(model)
    twin = _float64_copy(model)
    lip_stem = (lipschitz or stem_lipschitz(twin)).value
    cfg, quad = twin.cfg, float(twin.lyap.cfg.quad)
    level = certificate_level(twin)
    xd = x.detach().to(next(twin.parameters()).device, torch.float64)
    with torch.no_grad():
        prediction = model(x).argmax(1).cpu()  # the deployed (float32) model's own prediction
        z0 = twin.features(xd)
        v0 = twin.lyapunov(z0, prediction.to(z0.device)).cpu().numpy()
        dist0 = (z0 - twin.equilibria.index_select(0, prediction.to(z0.device))).norm(dim=1).cpu().numpy()
        lip = core_lipschitz(twin.lyap).cpu().numpy()[prediction.numpy()]
        slack = threshold_slack(twin.lyap).cpu().numpy()[prediction.numpy()]
        r_global = feature_radius(v0 + slack, dist0, lip, level, quad)
        zc0 = z0 - twin.equilibria.index_select(0, prediction.to(z0.device))
        r_local = (local_feature_radius(twin.lyap, zc0, prediction.to(z0.device), v0, level, lip)
                   if local else np.zeros_like(r_global))
    disjoint = disjoint_classes(twin.equilibria.detach(), level, quad)[prediction.numpy()]
    r_sound = np.maximum(r_global, r_local)  # both are sound: the larger ball lies in PRoA_p
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
            "feature_radius_global": r_global.astype(np.float64), "feature_radius_local": r_local.astype(np.float64),
            "v0": v0.astype(np.float64), "disjoint": disjoint, "flow_ok": flow_ok,
            "correct": certified & (pred == y.cpu().numpy())}


def model_facts(model, lipschitz=None) -> dict:
    """What every example's certificate shares: the stem bound, c, q, which PRoAs are proven disjoint."""
    twin = _float64_copy(model)
    bound = lipschitz or stem_lipschitz(twin)
    level, quad = certificate_level(twin), float(twin.lyap.cfg.quad)
    disjoint = disjoint_classes(twin.equilibria.detach(), level, quad)
    if getattr(twin.cfg, "classify_at", "zT") == "z0":
        flow = FLOW_NOT_NEEDED
    elif projected_decay(twin) and disjoint.all():
        flow = FLOW_EXACT_PROVEN
    else:
        flow = FLOW_NUMERIC
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
