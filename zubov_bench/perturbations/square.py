"""Square Attack (Andriushchenko et al. 2020), the original code from pyautoattack: the black-box control."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .autoattack import LIBRARY_NORM
from .base import Attack, require_images, seeded_rng
from .params import require
from .registry import register_perturbation


@dataclass
class SquareParams:
    norm: Literal["linf", "l2"] = "linf"
    # AutoAttack's own Square (inside `autoattack`) keeps 5,000 queries and its fixed schedule;
    # this stand-alone control defaults to 1,000 queries with the schedule stretched to fit,
    # since 5,000 queries cost minutes per epsilon on a CPU.
    n_queries: int = 1000
    p_init: float = 0.8
    restarts: int = 1
    rescale_schedule: bool = True


@register_perturbation("square")
class Square(Attack):
    description = ("Square Attack (pyautoattack, original code), score-based black-box control, "
                   "1,000 queries by default; images only")
    display_name = "Square"
    kind = "black-box"
    needs_images = True
    gradient_based = False
    Params = SquareParams

    def validate(self):
        p = self.params
        require(p.n_queries >= 1, f"square: n_queries must be >= 1, got {p.n_queries}")
        require(p.restarts >= 1, f"square: restarts must be >= 1, got {p.restarts}")
        require(0 < p.p_init <= 1, f"square: p_init must be in (0, 1], got {p.p_init}")

    def attack(self, model, x, y, eps, generator):
        from pyautoattack.square import SquareAttack

        require_images("square", x)
        p = self.params
        seed = generator.initial_seed()
        square = SquareAttack(model, norm=LIBRARY_NORM[p.norm], n_queries=p.n_queries, eps=eps,
                              p_init=p.p_init, n_restarts=p.restarts, seed=seed,
                              resc_schedule=p.rescale_schedule, device=x.device)
        with seeded_rng(seed, x.device):
            return square.perturb(x, y)
