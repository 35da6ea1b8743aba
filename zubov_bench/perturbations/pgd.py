"""PGD (Madry et al.), L∞ and L2, CE or DLR loss, random start and restarts.

CE uses torchattacks' `PGD` / `PGDL2` unchanged. torchattacks has no PGD with the DLR loss
(only APGD-DLR), so that one loop is ours, with torchattacks' step, projection and start.
Restarts re-attack only the samples that are still classified correctly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from .base import Attack, draw_seed, predict, seeded_rng
from .params import require
from .registry import register_perturbation


@dataclass
class PGDParams:
    norm: Literal["linf", "l2"] = "linf"
    loss: Literal["ce", "dlr"] = "ce"
    steps: int = 40
    step_size: Optional[float] = None  # None: 2.5 * eps / steps
    random_start: bool = True
    restarts: int = 1


def validate_pgd(p: PGDParams, owner: str) -> None:
    require(p.steps >= 1, f"{owner}: steps must be >= 1, got {p.steps}")
    require(p.restarts >= 1, f"{owner}: restarts must be >= 1, got {p.restarts}")
    require(p.step_size is None or p.step_size > 0, f"{owner}: step_size must be > 0")


@register_perturbation("pgd")
class PGD(Attack):
    description = ("PGD, L∞ or L2 (norm=), CE or DLR loss, 40 steps of 2.5·eps/steps, "
                   "random start, restarts")
    display_name = "PGD"
    large_eps_check = True  # the strongest plain white-box attack: sanity check 1 runs it
    Params = PGDParams

    def validate(self):
        validate_pgd(self.params, self.name)

    def uses_margin_loss(self):
        return self.params.loss == "dlr"

    def attack(self, model, x, y, eps, generator):
        return run_pgd(model, model, x, y, eps, self.params, generator)


@register_perturbation("pgd-l2")
class PGDL2(PGD):
    description = "PGD with norm=l2 by default (so that --attack all covers both norms)"
    large_eps_check = False  # PGD itself runs the check

    def __init__(self, **params):
        super().__init__(**{"norm": "l2", **params})


def run_pgd(craft_model: nn.Module, judge_model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            eps: float, p: PGDParams, generator: torch.Generator) -> torch.Tensor:
    """PGD crafted on `craft_model`; restarts continue on samples `judge_model` still gets right.

    Samples never fooled get the last restart's candidate, the fooled ones their fooling one.
    """
    step = p.step_size if p.step_size is not None else 2.5 * eps / p.steps
    x_adv = x.clone()
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    with seeded_rng(draw_seed(generator), x.device):
        for restart in range(p.restarts):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            candidate = pgd_once(craft_model, x[idx], y[idx], eps, step, p)
            x_adv[idx] = candidate
            if restart + 1 < p.restarts:  # the caller scores the final candidates itself
                robust[idx] = predict(judge_model, candidate) == y[idx]
    return x_adv


def pgd_once(model, x, y, eps, step, p: PGDParams) -> torch.Tensor:
    if p.loss == "ce":
        cls = torchattacks_pgd_class(p.norm)
        atk = cls(AsImages(model, x.shape[1:]), eps=eps, alpha=step, steps=p.steps,
                  random_start=p.random_start)
        atk.set_device(x.device)
        return atk(as_images(x), y).reshape(x.shape)
    return pgd_dlr(model, x, y, eps, step, p.steps, p.norm, p.random_start)


def torchattacks_pgd_class(norm: str):
    import torchattacks

    return torchattacks.PGD if norm == "linf" else torchattacks.PGDL2


def as_images(x: torch.Tensor) -> torch.Tensor:
    """torchattacks' L2 code assumes (N, C, H, W): view vectors as (N, 1, 1, D)."""
    return x if x.dim() == 4 else x.reshape(len(x), 1, 1, -1)


class AsImages(nn.Module):
    """Undoes `as_images` before calling the model."""

    def __init__(self, model: nn.Module, sample_shape):
        super().__init__()
        self.model = model
        self.sample_shape = tuple(sample_shape)
        # a new module is in training mode; torchattacks restores the wrapper's flag after each
        # attack (model.train() recurses into the wrapped model), so the wrapper takes the model's
        self.train(model.training)

    def forward(self, x):
        return self.model(x.reshape(len(x), *self.sample_shape))


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample DLR loss of Croce & Hein (2020); needs at least 3 classes."""
    require(logits.shape[1] >= 3, f"the DLR loss needs at least 3 classes, the model has {logits.shape[1]}")
    sorted_logits, order = logits.sort(dim=1)
    top_is_y = (order[:, -1] == y).float()
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    best_other = sorted_logits[:, -2] * top_is_y + sorted_logits[:, -1] * (1.0 - top_is_y)
    return -(z_y - best_other) / (sorted_logits[:, -1] - sorted_logits[:, -3] + 1e-12)


def pgd_dlr(model, x, y, eps, step, steps, norm, random_start) -> torch.Tensor:
    """PGD on the DLR loss, with torchattacks' start, step and projection for each norm."""
    if random_start:
        x_adv = project(x, x + random_delta(x, eps, norm), eps, norm)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = dlr_loss(model(x_adv), y).sum()
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = project(x, x_adv.detach() + step * direction(grad, norm), eps, norm)
    return x_adv


def random_delta(x, eps, norm):
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    delta = torch.randn_like(x)
    radius = torch.rand(len(x), device=x.device) * eps
    return delta * per_sample(radius / delta.reshape(len(x), -1).norm(dim=1), x)


def direction(grad, norm):
    if norm == "linf":
        return grad.sign()
    return grad * per_sample(1.0 / (grad.reshape(len(grad), -1).norm(dim=1) + 1e-10), grad)


def project(x, x_adv, eps, norm):
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.reshape(len(x), -1).norm(dim=1)
        delta = delta * per_sample(torch.clamp(eps / (norms + 1e-12), max=1.0), x)
    return (x + delta).clamp(0.0, 1.0)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))
