"""One batch of one record: attack the clean-correct rows, score them on the deployed model.

A solver failure (SolverError) on a batch is retried on halves, down to single samples; the
samples that still fail count as failed and never as robust.
"""
from __future__ import annotations

import json
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models.ode import SolverError
from ..records import attack_flag_name
from ..perturbations.base import lp_distance

ATOL = 1e-5  # float slack when checking that an attack respected its threat model
FLAGS = "flags"  # a batch's entry for the flags its perturbation's library raised (JSON text)


def split_on_failure(fn: Callable[[torch.Tensor], torch.Tensor], n: int, fill: torch.Tensor):
    """out[i] = fn(rows)[i] for rows that solve; bisect batches whose solve fails.

    Returns (out, failed) where failed marks the rows that failed even alone.
    """
    out, failed = fill.clone(), torch.zeros(n, dtype=torch.bool)
    pending = [torch.arange(n)] if n else []
    while pending:
        rows = pending.pop()
        try:
            out[rows] = fn(rows).to(out.dtype)
        except SolverError:
            if len(rows) == 1:
                failed[rows] = True
            else:
                half = len(rows) // 2
                pending += [rows[half:], rows[:half]]
    return out, failed


@torch.no_grad()
def predict_rows(model, x: torch.Tensor):
    """Deployed predictions with failures handled; returns (pred, failed, nfe per row) on CPU."""
    nfe = torch.full((len(x),), math.nan)

    def run(rows):
        if hasattr(model, "reset_nfe"):
            model.reset_nfe()
        logits = model(x[rows.to(x.device)])
        if hasattr(model, "nfe"):
            nfe[rows] = float(model.nfe)
        bad = ~torch.isfinite(logits).all(1)
        return torch.where(bad, -1, logits.argmax(1)).cpu()

    pred, failed = split_on_failure(run, len(x), torch.full((len(x),), -1, dtype=torch.long))
    failed |= pred < 0  # non-finite logits count as a failed solve
    return pred, failed, nfe


def check_threat_model(perturbation, x: torch.Tensor, x_adv: torch.Tensor, severity: float) -> None:
    """An attack that leaves [0, 1] or its ε-ball is a bug: stop rather than score it."""
    if len(x) == 0:
        return
    if not torch.isfinite(x_adv).all() or x_adv.min() < -ATOL or x_adv.max() > 1 + ATOL:
        raise RuntimeError(f"perturbation {perturbation.name!r} returned inputs outside [0, 1]")
    if perturbation.threat in ("linf", "l2"):
        dist = float(lp_distance(x_adv, x, perturbation.threat).max())
        if dist > severity * (1 + 1e-4) + ATOL:
            raise RuntimeError(f"perturbation {perturbation.name!r} left its {perturbation.threat} ball: "
                               f"distance {dist:.6g} > eps {severity:g}")


def run_batch(perturbation, view, model, severity: float, seed: int, x, y, index, clean, clean_failed,
              clean_nfe) -> dict[str, np.ndarray]:
    """Per-example outcome arrays (index, clean, robust, failed, nfe) of one batch."""
    rows = clean.nonzero().squeeze(1)
    xr, yr, ir = x[rows.to(x.device)], y[rows.to(y.device)], index[rows]

    def attack(sub):
        dev = sub.to(x.device)
        cuda = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)  # library code that draws from the global RNG repeats exactly
            generator = torch.Generator().manual_seed(seed)
            x_adv = perturbation(view, xr[dev], yr[dev], severity, generator, ir[sub])
        check_threat_model(perturbation, xr[dev], x_adv, severity)
        return x_adv.cpu()

    x_adv, attack_failed = split_on_failure(attack, len(rows), xr.detach().cpu())
    pred, score_failed, nfe_rows = predict_rows(model, x_adv.to(x.device))
    robust = torch.zeros(len(x), dtype=torch.bool)
    robust[rows] = (pred == yr.cpu()) & ~attack_failed & ~score_failed
    failed = clean_failed.clone()
    failed[rows] |= attack_failed | score_failed
    nfe = clean_nfe.clone()
    nfe[rows] = nfe_rows
    return {"index": index.numpy().astype(np.int64), "clean": clean.numpy(), "robust": robust.numpy(),
            "failed": failed.numpy(), "nfe": nfe.numpy().astype(np.float32)}


def flags_array(flags: dict[str, str]) -> np.ndarray:
    """A batch's flags as a 0-d text array: stored with the batch, so a resumed record keeps them."""
    return np.array(json.dumps(flags, sort_keys=True))


def flags_sanity(perturbation: str, batches: list[dict[str, np.ndarray]]) -> dict[str, dict]:
    """The record's `sanity` entries for the flags of its batches (the first message of each)."""
    flags: dict[str, str] = {}
    for arrays in batches:
        for name, message in json.loads(str(arrays[FLAGS])).items() if FLAGS in arrays else ():
            flags.setdefault(name, message)
    return {attack_flag_name(perturbation, name): {"ok": False, "detail": message}
            for name, message in sorted(flags.items())}


def input_gradient_norms(view, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample L2 norms of d CE / d x and of d margin / d x through the view, at clean points.

    The margin (true logit minus the largest other) tells a saturated softmax, whose cross-entropy
    gradient rounds to exactly zero in float32 at a logit margin above about 17, from a view that
    passes no gradient at all."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = view(x)
        (ce_grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x, retain_graph=True)
        others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
        margin = logits.gather(1, y[:, None]).squeeze(1) - others.max(dim=1).values
        (margin_grad,) = torch.autograd.grad(margin.sum(), x)
    return ce_grad.flatten(1).norm(dim=1).detach().cpu(), margin_grad.flatten(1).norm(dim=1).detach().cpu()
