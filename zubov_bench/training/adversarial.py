"""PGD adversarial training (Madry et al. 2018): every batch is replaced by its L∞ PGD examples
before the model's own `training_loss`, so the Zubov-Net losses (or any model's) see them too.

The examples come from the suite's `pgd` attack (CE loss, random start, step 2.5·eps/steps), crafted
with the model in eval mode. The random start is seeded by (run seed, step), so a resumed run draws
the same examples.
"""
from __future__ import annotations

import torch

from ..models.modes import evaluation_mode
from ..perturbations import create_perturbation


def adversarial_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                      seed: int) -> torch.Tensor:
    attack = create_perturbation("pgd", steps=steps)
    with evaluation_mode(model):
        x_adv = attack.attack(model, x, y, eps, torch.Generator().manual_seed(seed))
    return x_adv.detach()
