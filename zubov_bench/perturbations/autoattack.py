"""AutoAttack (Croce & Hein 2020): the original code as shipped by `pyautoattack==0.2.0`, wrapped once.

`run_autoattack` is the only place the suite calls pyautoattack's `AutoAttack`. The seed is the
evaluation generator's seed, so a run is reproducible and can be compared with pyautoattack's own
`run_standard_evaluation` on the same samples and seed. Progress goes to the `auto-attack` logger.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import UserError
from .base import Attack, find_attribute, require_images, seeded_rng
from .params import require
from .registry import register_perturbation

LIBRARY_NORM = {"linf": "Linf", "l2": "L2"}
ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
VERSION_ATTACKS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
MIN_CLASSES = {"apgd-dlr": 3, "apgd-t": 4, "fab-t": 3}


@dataclass
class AutoAttackParams:
    version: Literal["standard", "plus", "rand", "custom"] = "standard"
    norm: Literal["linf", "l2"] = "linf"
    attacks: tuple[str, ...] = ()  # version=custom only, from ATTACKS


@register_perturbation("autoattack")
class AutoAttack(Attack):
    description = ("AutoAttack (pyautoattack 0.2.0, original code): version standard|plus|rand|custom, "
                   "norm linf|l2")
    display_name = "AutoAttack"
    ensemble = True  # standard holds Square: not a pure gradient attack for sanity check 3
    relative_cost = 4  # several attacks in one: after the single white-box attacks
    Params = AutoAttackParams

    def validate(self):
        p = self.params
        if p.version == "custom":
            require(bool(p.attacks), "autoattack: version=custom needs attacks=a,b,... "
                                     f"from {', '.join(ATTACKS)}")
            bad = [a for a in p.attacks if a not in ATTACKS]
            require(not bad, f"autoattack: unknown attack(s) {', '.join(bad)}; known: {', '.join(ATTACKS)}")
        else:
            require(not p.attacks, f"autoattack: attacks= is only used with version=custom, "
                                   f"not {p.version}")

    def attacks_to_run(self) -> tuple[str, ...]:
        p = self.params
        return p.attacks if p.version == "custom" else VERSION_ATTACKS[p.version]

    def applies_to(self, model):
        spec = find_attribute(model, "spec")
        return spec is None or spec.is_image or "square" not in self.attacks_to_run()

    def attack(self, model, x, y, eps, generator):
        if "square" in self.attacks_to_run():
            require_images("autoattack (its Square attack)", x)
        p = self.params
        return run_autoattack(model, x, y, eps=eps, norm=p.norm, version=p.version,
                              attacks=p.attacks or None, seed=generator.initial_seed())


def run_autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                   version: str, seed: int, attacks=None, batch_size: int | None = None,
                   only=None) -> torch.Tensor:
    """pyautoattack's run_standard_evaluation on (x, y); returns x_adv. Leaves torch's RNG as it was.

    `only` runs a subset of the version's attacks with the version's settings (version=custom
    runs the library's defaults instead, for example 5 APGD restarts where standard runs 1).
    """
    from pyautoattack import AutoAttack as LibraryAutoAttack

    num_classes = _num_classes(model, x)
    to_run = list(only or attacks or VERSION_ATTACKS[version])
    for name in to_run:
        if num_classes < MIN_CLASSES.get(name, 2):
            raise UserError(f"autoattack: {name} needs at least {MIN_CLASSES[name]} classes, "
                            f"the model has {num_classes}")
    adversary = LibraryAutoAttack(model, norm=LIBRARY_NORM[norm], eps=eps, version=version,
                                  device=x.device, seed=seed,
                                  attacks=list(attacks) if version == "custom" else None)
    if only:
        adversary.attacks_to_run = list(only)
    # The library targets the 9 runner-up classes; with fewer classes there are fewer targets.
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
    with seeded_rng(seed, x.device):  # the library reseeds torch's global RNG itself
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size or len(x))
    return x_adv


@torch.no_grad()
def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    return model(x[:1]).shape[1]
