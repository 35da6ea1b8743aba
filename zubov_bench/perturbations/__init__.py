"""Perturbations: stochastic noise and adversarial attacks behind one call shape.

    p = create_perturbation("pgd", steps=40)
    x_adv = p(model, x, y, severity=0.1, generator=torch.Generator().manual_seed(0), index=idx)
"""
from .base import Attack, Perturbation
from .registry import PERTURBATIONS, create_perturbation, list_perturbations, register_perturbation

__all__ = ["Attack", "Perturbation", "PERTURBATIONS", "create_perturbation", "list_perturbations",
           "register_perturbation"]
