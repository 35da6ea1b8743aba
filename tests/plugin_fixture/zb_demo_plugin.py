"""A third-party model for zubov-bench, written only against the public API.

The entry-point test installs this file (without pip) as the distribution `zb-demo-plugin`,
which declares `demo-ode = zb_demo_plugin` in the `zubov_bench.models` entry-point group.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from zubov_bench.models import ODEConfig, ODEModel, batch_accuracy, register_model
from zubov_bench.models.layers import MLPField, make_stem
from zubov_bench.presets import register_preset


@dataclass
class DemoConfig(ODEConfig):
    d: int = 32
    field_hidden: int = 64


@register_model("demo-ode")
class DemoODE(ODEModel):
    Config = DemoConfig
    description = "demo plugin: a small autonomous Neural ODE with a linear head (entry-point example)"

    def __init__(self, spec, cfg: DemoConfig):
        super().__init__(spec, cfg, MLPField(cfg.d, cfg.field_hidden, cfg.field_act))
        self.stem = make_stem(spec, cfg.d, cfg.stem, cfg.stem_width, cfg.spectral_norm)
        self.head = nn.Linear(cfg.d, spec.num_classes)

    def forward(self, x):
        return self.head(self.solve(self.stem(self.normalize(x))))

    def training_loss(self, x, y):
        logits = self(self.augment(x))
        loss = F.cross_entropy(logits, y)
        return loss, {"cls": float(loss.detach()), "acc": batch_accuracy(logits, y)}


register_preset("demo-ode", "digits", {"train": {"lr": 5e-3}})
