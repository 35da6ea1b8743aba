"""`tisode`: time-invariant steady-state Neural ODE (Yan et al., ICLR 2020).

Training unrolls one explicit-Euler trajectory with step `ss_step` (the released setting) past the
prediction time T: the logits come from z(T), and the steady-state penalty
w * int_{T1}^{T2} |f(z(t))| dt is the left Riemann sum of the field values that Euler already
computes on [T1, T2). |f| is the mean absolute value over state coordinates, averaged over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zubov_bench.data.base import DataSpec
from zubov_bench.errors import UserError
from zubov_bench.models import ODEConfig, ODEModel, batch_accuracy, register_model
from zubov_bench.models.layers import MLPField, make_stem
from zubov_bench.models.paper_protocol import PaperProtocol


@dataclass
class TisODEConfig(ODEConfig):
    solver: str = "euler"  # deployed solver; Euler with step T / steps = 0.05, as trained
    steps: int = 20
    noise_aug: float = 0.5  # released recipe: Gaussian noise with probability 0.5
    ss_weight: float = 0.01  # w
    ss_t1: float = 0.9
    ss_t2: float = 1.5
    ss_step: float = 0.05  # Euler step of the training trajectory
    ss_start_epoch: int = 5  # the penalty is on from this (0-based) epoch; a run must train past it


def _grid_index(t: float, step: float, name: str) -> int:
    n = round(t / step)
    if abs(n * step - t) > 1e-6 * max(1.0, t):
        raise UserError(f"tisode: {name}={t:g} is not a multiple of ss_step={step:g}")
    return n


@register_model("tisode")
class TisODE(ODEModel):
    """Time-invariant f(z), linear head, CE + w * steady-state penalty along the same trajectory."""

    Config = TisODEConfig
    loss_terms = ("cls", "steady")
    description = "TisODE (Yan et al. 2020): time-invariant f, CE + w*int_{T1}^{T2}|f(z(t))|dt, noise aug"
    recipes = {
        "toy2d": {"model": {"noise_aug": 0.0}},
        # the paper starts the penalty after epoch 5 of long runs; in a 6-epoch budget that leaves it
        # one epoch, so one warm-up epoch of cross-entropy, then the penalty for the other five
        "fashion-mnist": {"model": {"ss_start_epoch": 1}},
    }
    # the paper's white-box attack: FGSM (one signed step of eps in pixel units), docs/evaluation.md
    paper_attack = PaperProtocol("fgsm", {}, "pixel", "Yan et al. ICLR 2020; github.com/HanshuYAN/TisODE")

    def __init__(self, spec: DataSpec, cfg: TisODEConfig):
        super().__init__(spec, cfg, MLPField(cfg.d, cfg.field_hidden, cfg.field_act, time_dependent=False))
        if not 0 <= cfg.ss_t1 < cfg.ss_t2:
            raise UserError(f"tisode: need 0 <= ss_t1 < ss_t2, got {cfg.ss_t1:g}, {cfg.ss_t2:g}")
        self.n_predict = _grid_index(cfg.T, cfg.ss_step, "T")
        self.n_t1 = _grid_index(cfg.ss_t1, cfg.ss_step, "ss_t1")
        self.n_t2 = _grid_index(cfg.ss_t2, cfg.ss_step, "ss_t2")
        self.stem = make_stem(spec, cfg.d, cfg.stem, cfg.stem_width, cfg.spectral_norm)
        self.head = nn.Linear(cfg.d, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.solve(self.features(x)))

    def check_schedule(self, epochs: int) -> None:
        super().check_schedule(epochs)
        if self.cfg.ss_weight > 0 and self.cfg.ss_start_epoch >= epochs:
            raise UserError(f"tisode: the steady-state penalty starts at epoch ss_start_epoch="
                            f"{self.cfg.ss_start_epoch} (0-based) but the run trains {epochs} epochs, so it "
                            "would never be on; lower model_config ss_start_epoch or train longer")

    def penalty_active(self) -> bool:
        return self.cfg.ss_weight > 0 and self.epoch >= self.cfg.ss_start_epoch

    def rollout(self, z0: torch.Tensor, with_penalty: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler from z0; returns z(T) and int_{T1}^{T2} |f| dt (0 when not asked for)."""
        h = self.cfg.ss_step
        n_steps = max(self.n_predict, self.n_t2) if with_penalty else self.n_predict
        z, z_T, penalty = z0, z0, z0.new_zeros(())
        for i in range(n_steps):
            f = self.odefunc(i * h, z)
            if with_penalty and self.n_t1 <= i < self.n_t2:
                penalty = penalty + h * f.abs().mean()
            z = z + h * f
            if i + 1 == self.n_predict:
                z_T = z
        return z_T, penalty

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        on = self.penalty_active()
        z_T, penalty = self.rollout(self.features(self.augment(x)), with_penalty=on)
        logits = self.head(z_T)
        ce = F.cross_entropy(logits, y)
        loss = ce + self.cfg.ss_weight * penalty if on else ce
        return loss, {"cls": float(ce.detach()), "steady": float(penalty.detach()),
                      "acc": batch_accuracy(logits, y)}
