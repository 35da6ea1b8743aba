"""The Lyapunov-aware adaptive attack on the initial-state PRoA membership (docs/evaluation.md).

A strongly contracting flow can saturate the cross-entropy at z(T). This attack instead pushes
z0 out of its class's region of attraction: it runs the original APGD-CE and APGD-DLR
(pyautoattack) on the surrogate head -V(z0)/tau (`model.initial_state_logits`), and counts
success on the real model's prediction. Each loss attacks only the samples still robust.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import UserError
from .autoattack import LIBRARY_NORM
from .base import Attack, draw_seed, find_attribute, predict, seeded_rng
from .params import require
from .registry import register_perturbation


@dataclass
class LyapunovParams:
    norm: Literal["linf", "l2"] = "linf"
    losses: tuple[str, ...] = ("ce", "dlr")
    steps: int = 100
    restarts: int = 1


class InitialStateHead(nn.Module):
    """The surrogate classifier x -> -V(z0(x))/tau."""

    def __init__(self, model: nn.Module, head):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, x):
        return self.head(x)


@register_perturbation("lyapunov")
class LyapunovAttack(Attack):
    description = ("adaptive attack on the initial-state PRoA: APGD-CE and APGD-DLR on -V(z0)/tau, "
                   "success judged on the real model")
    display_name = "Lyapunov-aware"
    kind = "adaptive"
    gradient_based = False  # the surrogate never calls the solver: one run is enough
    Params = LyapunovParams

    def validate(self):
        p = self.params
        require(bool(p.losses) and all(loss in ("ce", "dlr") for loss in p.losses),
                f"lyapunov: losses must be a list of ce, dlr; got {','.join(p.losses) or '(empty)'}")
        require(p.steps >= 1, f"lyapunov: steps must be >= 1, got {p.steps}")
        require(p.restarts >= 1, f"lyapunov: restarts must be >= 1, got {p.restarts}")

    def uses_margin_loss(self):
        return "dlr" in self.params.losses

    def applies_to(self, model):
        """Models that declare Lyapunov structure (models.protocols.LyapunovModel; registration
        guarantees its members, so no such model is skipped)."""
        return bool(find_attribute(model, "has_lyapunov"))

    def attack(self, model, x, y, eps, generator):
        head = find_attribute(model, "initial_state_logits")
        if not self.applies_to(model) or head is None:
            raise UserError("lyapunov applies only to models with Lyapunov structure "
                            "(has_lyapunov = True and the LyapunovModel members), e.g. zubov")
        surrogate = InitialStateHead(model, head)
        x_adv = x.clone()
        robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.params.restarts):
            for loss in self.params.losses:
                idx = robust.nonzero().squeeze(1)
                if idx.numel() == 0:
                    return x_adv
                candidate = self._apgd(surrogate, x[idx], y[idx], eps, loss, draw_seed(generator))
                x_adv[idx] = candidate
                robust[idx] = predict(model, candidate) == y[idx]
        return x_adv

    def _apgd(self, surrogate, x, y, eps, loss, seed):
        from pyautoattack.autopgd_base import APGDAttack

        if loss == "dlr" and predict_classes(surrogate, x) < 3:
            raise UserError("lyapunov: the DLR loss needs at least 3 classes; use losses=ce")
        apgd = APGDAttack(surrogate, n_iter=self.params.steps, norm=LIBRARY_NORM[self.params.norm],
                          n_restarts=1, eps=eps, seed=seed, loss=loss, device=x.device)
        with seeded_rng(seed, x.device):
            # best_loss: the highest-loss point for every sample, not only those fooling the
            # surrogate, since success is judged on the real model
            return apgd.perturb(x, y, best_loss=True)


@torch.no_grad()
def predict_classes(model, x) -> int:
    return model(x[:1]).shape[1]
