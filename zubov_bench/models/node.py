"""`node`: the vanilla Neural ODE control (Chen et al. 2018), same stem, width and solver as Zubov-Net."""
from __future__ import annotations

from torch import nn

from ..data.base import DataSpec
from .base import ODEConfig, ODEModel, classification_loss
from .layers import MLPField, make_stem
from .registry import register_model


@register_model("node")
class NeuralODE(ODEModel):
    """Vanilla Neural ODE: z0 = phi(x), dz/dt = f(z, t), linear head, cross-entropy only."""

    Config = ODEConfig
    description = "vanilla Neural ODE (Chen et al. 2018): MLP field f(z, t), linear head, CE only"

    def __init__(self, spec: DataSpec, cfg: ODEConfig):
        super().__init__(spec, cfg, MLPField(cfg.d, cfg.field_hidden, cfg.field_act, time_dependent=True))
        self.stem = make_stem(spec, cfg.d, cfg.stem, cfg.stem_width, cfg.spectral_norm)
        self.head = nn.Linear(cfg.d, spec.num_classes)

    def forward(self, x):
        return self.head(self.solve(self.features(x)))

    def training_loss(self, x, y):
        logits = self(self.augment(x))
        return classification_loss(logits, y)
