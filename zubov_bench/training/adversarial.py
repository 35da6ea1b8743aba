"""PGD adversarial training (Madry et al. 2018): every batch (or the share `adv_fraction` of it) is
replaced by its L∞ PGD examples before the model's own `training_loss`, so the Zubov-Net losses (or
any model's) see them too.

The examples come from the suite's `pgd` attack (CE loss, random start, step 2.5·eps/steps), crafted
with the model in eval mode. The random start is seeded by (run seed, step), so a resumed run draws
the same examples.
"""
from __future__ import annotations

import torch

from ..models.modes import evaluation_mode
from ..perturbations import create_perturbation


def adversarial_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                      seed: int, fraction: float = 1.0) -> torch.Tensor:
    """The batch with its first round(fraction * len) examples replaced by their PGD examples (the
    batch order is shuffled, so that is a random share; fraction 0.5 is Goodfellow et al.'s mix)."""
    k = max(1, round(fraction * len(x)))
    attack = create_perturbation("pgd", steps=steps)
    with evaluation_mode(model):
        x_adv = attack.attack(model, x[:k], y[:k], eps, torch.Generator().manual_seed(seed))
    return torch.cat([x_adv.detach(), x[k:]]) if k < len(x) else x_adv.detach()
