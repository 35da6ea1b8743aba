"""Are a model's Lyapunov functions Lyapunov functions of its flow? Measured, for any state size.

For a model with Lyapunov structure (`has_lyapunov = True` and the members of
`zubov_bench.models.protocols.LyapunovModel`; docs/add_your_model.md) this
measures what Zubov-Net claims (docs/zubov-net.md §1): every class equilibrium e_k is stable,
points inside PRoA_k = {V_k < c} flow to e_k, V_k falls along them, and the data end in their
own PRoA. The numbers are stored beside the evaluation records (`alignment.jsonl` in the results
folder) and shown by `zubov-bench table`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..io import write_text
from ..models.modes import evaluation_mode
from ..models.protocols import require_lyapunov_model
from .roa import (assign_to_equilibria, compute_roa, default_extent, default_tol, fixed_step_solver,
                  max_real_eigenvalues)

ALIGNMENT_FILE = "alignment.jsonl"


@dataclass(frozen=True)
class AlignmentConfig:
    horizon: float = 10.0  # PRoA points are integrated over horizon * T
    steps_per_unit: int = 20  # RK4 steps per unit of time (dt = 0.05; 10 gave the same numbers on toy2d)
    rays_per_class: int = 100  # PRoA samples: one per random direction from e_k
    inside: float = 0.98  # a sample lies at u * inside * r*(direction), u ~ U(0, 1), r* the boundary radius
    trajectory_points: int = 11  # grid points of [0, T] at which V_y is checked to fall
    fall_tolerance: float = 1e-6  # relative slack for "V_y never rises" between grid points
    iou_resolution: int = 60  # d = 2 only: grid points per axis for the PRoA-RoA IoU
    seed: int = 0


def proa_level(model) -> float:
    """c in PRoA_k = {V_k < c}: the model's `cfg.level`, or 1 for a model that names none (the
    `stable` baseline makes min_k V_k decay everywhere and prescribes no region)."""
    return float(getattr(model.cfg, "level", 1.0))


def proa_samples(model, rays_per_class: int, inside: float, generator: torch.Generator):
    """Points inside every {V_k < c}: along random directions from e_k, below the boundary radius
    (doubling then 40 bisection rounds on V_k(e_k + r u) - c). A sample is kept only if it lies in
    the PRoA: rays that never leave it, or from an e_k outside its own PRoA, give none (the kept
    share is returned; a region that is not star-shaped around e_k loses the samples outside it)."""
    eq = model.equilibria.detach()
    k, d = eq.shape
    level = proa_level(model)
    cls = torch.arange(k, device=eq.device).repeat_interleave(rays_per_class)
    u = torch.randn(len(cls), d, generator=generator).to(eq)
    u = u / u.norm(dim=1, keepdim=True)
    gap = lambda r: model.lyapunov(eq[cls] + r[:, None] * u, cls) - level  # noqa: E731
    scale = float(torch.pdist(eq).min()) if k > 1 else 1.0
    lo, hi = torch.zeros(len(cls)).to(eq), torch.full((len(cls),), 0.01 * scale).to(eq)
    for _ in range(40):  # double hi until it leaves the PRoA
        out = gap(hi) >= 0
        if bool(out.all()):
            break
        lo, hi = torch.where(out, lo, hi), torch.where(out, hi, 2 * hi)
    crossed = gap(hi) >= 0
    for _ in range(40):
        mid = (lo + hi) / 2
        out = gap(mid) >= 0
        lo, hi = torch.where(out, lo, mid), torch.where(out, mid, hi)
    radius = inside * lo * torch.rand(len(cls), generator=generator).to(eq)
    points = eq[cls] + radius[:, None] * u
    kept = crossed & (gap(radius) < 0)
    return points[kept], cls[kept], float(kept.float().mean())


def _v_dot(model, z: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        grad = torch.autograd.grad(model.lyapunov(z, cls).sum(), z)[0]
    return (grad * model.vector_field(z.detach())).sum(1)


@torch.no_grad()
def alignment_diagnostics(model, x: torch.Tensor, y: torch.Tensor, cfg: AlignmentConfig | None = None,
                          **overrides) -> dict:
    """The alignment numbers of one model on test inputs x (raw, in [0, 1]) with labels y.

    Settings come from `cfg` (AlignmentConfig's documented defaults) with any field overridden by
    keyword, e.g. `alignment_diagnostics(model, x, y, horizon=20.0, rays_per_class=50)`."""
    cfg = dataclasses.replace(cfg or AlignmentConfig(), **overrides)
    require_lyapunov_model(model, "alignment diagnostics")
    with evaluation_mode(model):
        return _diagnostics(model, x, y, cfg)


def _diagnostics(model, x, y, cfg: AlignmentConfig) -> dict:
    eq = model.equilibria.detach()
    k = len(eq)
    level = proa_level(model)
    T = float(getattr(getattr(model, "solver", None), "T", 1.0))
    real = max_real_eigenvalues(model)
    out = {"level": level, "equilibria": k, "stable_equilibria": int((real < 0).sum()),
           "max_real_eigenvalue": float(real.max()),
           "max_field_at_equilibria": float(model.vector_field(eq).norm(dim=1).max()),
           "equilibria_in_own_proa": int((model.lyapunov(eq, torch.arange(k, device=eq.device)) < level).sum())}

    z0 = model.features(x)
    states = model.solve(z0, model.grid(cfg.trajectory_points))  # (P, N, d)
    v = model.lyapunov(states.reshape(-1, states.shape[-1])).reshape(*states.shape[:2], k)
    v_y = v.gather(2, y.reshape(1, -1, 1).expand(len(states), -1, 1)).squeeze(2)  # (P, N)
    correct = model(x).argmax(1) == y
    share = lambda mask: float(mask.float().mean()) if mask.numel() else float("nan")  # noqa: E731
    rises = v_y[1:] - v_y[:-1]
    out.update({
        "n": len(x), "clean_acc": share(correct),
        "data_in_proa_zT": share(v_y[-1][correct] < level),
        "data_in_proa_z0": share(v_y[0][correct] < level),
        "v_y_falls": share(v_y[-1] < v_y[0]),
        "v_y_never_rises": share((rises <= cfg.fall_tolerance * (1 + v_y[:-1].abs())).all(0)),
        "median_v_y_z0": float(v_y[0].median()), "median_v_y_zT": float(v_y[-1].median()),
    })

    gen = torch.Generator().manual_seed(cfg.seed)
    points, cls, found = proa_samples(model, cfg.rays_per_class, cfg.inside, gen)
    horizon = cfg.horizon * T
    steps = max(1, round(cfg.steps_per_unit * horizon))
    with model.using_solver(fixed_step_solver(model, horizon, steps)):
        end = model.solve(points)
    # "reached e_k": the end state is finite, nearest to e_k, and within a quarter of the closest
    # pair of equilibria's distance from it (the RoA figure's rule)
    tol = default_tol(eq)
    reached = assign_to_equilibria(end, eq, tol) == cls
    per_class = torch.stack([reached[cls == c].float().mean() for c in range(k)])
    out.update({
        "proa_rays_kept": found, "proa_points": len(points),
        "proa_reach_equilibrium": share(reached), "proa_reach_worst_class": float(per_class.nan_to_num(0).min()),
        "proa_v_dot_negative": share(_v_dot(model, points, cls) < 0),
        "horizon": horizon, "reach_tolerance": tol,
    })
    if eq.shape[1] == 2:
        roa = compute_roa(model, default_extent(z0, eq), resolution=cfg.iou_resolution, horizon=horizon,
                          steps=steps, tol=tol, level=level)
        out.update({"proa_roa_iou": roa.mean_iou, "unassigned": float((roa.roa < 0).mean())})
    return out


# --- storage beside the evaluation records ---------------------------------------------
def alignment_entry(ctx_meta: dict, path: str, diagnostics: dict, seed: int, cfg: AlignmentConfig) -> dict:
    extra = ctx_meta.get("extra") or {}
    return {"model": ctx_meta["model"], "method": str(extra.get("method") or ctx_meta["model"]),
            "dataset": ctx_meta["data"]["name"], "checkpoint": path, "checkpoint_sha256": ctx_meta["sha256"],
            "train_seed": int(extra.get("seed", -1)), "seed": seed, "config": dataclasses.asdict(cfg),
            **diagnostics}


def read_alignment(root: str | Path) -> list[dict]:
    """Every stored alignment entry. A damaged line is refused (naming file:line) rather than
    skipped, so that the next write cannot silently drop it."""
    path = Path(root) / ALIGNMENT_FILE
    if not path.is_file():
        return []
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}:{number}: not an alignment entry ({exc}); repair or delete the line, "
                            "or delete the file and re-run eval") from None
        if not isinstance(entry, dict) or "checkpoint_sha256" not in entry:
            raise UserError(f"{path}:{number}: not an alignment entry (no checkpoint_sha256)")
        out.append(entry)
    return out


def _entry_key(entry: dict) -> tuple:
    return entry["checkpoint_sha256"], entry.get("seed"), entry.get("n"), json.dumps(entry.get("config"), sort_keys=True)


def store_alignment(store, entry: dict, replace: bool = False) -> bool:
    """Add (or with `replace`, overwrite) one entry in the store's alignment.jsonl, atomically."""
    with store.locked():
        entries = read_alignment(store.root)
        same = [e for e in entries if _entry_key(e) == _entry_key(entry)]
        if same and not replace:
            return False
        _write_alignment(store, [e for e in entries if _entry_key(e) != _entry_key(entry)] + [entry])
        return True


def remove_alignment(store, stale) -> int:
    """Drop the entries for which `stale(entry)` holds, atomically; returns how many went."""
    with store.locked():
        entries = read_alignment(store.root)
        kept = [e for e in entries if not stale(e)]
        if len(kept) < len(entries):
            _write_alignment(store, kept)
        return len(entries) - len(kept)


def _write_alignment(store, entries: list[dict]) -> None:
    write_text(Path(store.root) / ALIGNMENT_FILE, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))


def has_alignment(store, sha: str, seed: int, n: int, cfg: AlignmentConfig) -> bool:
    key = (sha, seed, n, json.dumps(dataclasses.asdict(cfg), sort_keys=True))
    return any(_entry_key(e) == key for e in read_alignment(store.root))
