"""`node-conv`: the convolutional ODE block of the torchdiffeq MNIST example (Chen et al. 2018).

Downsampling convs to a 64-channel map, then dz/dt = norm(conv(t, relu(norm(conv(t, relu(norm(z)))))))
with the time appended as a constant channel to each conv's input, then norm-ReLU-avg-pool-linear.
Images of 8x8 pixels or less are downsampled once instead of twice (digits: 4x4 maps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zubov_bench.data.base import DataSpec
from zubov_bench.errors import UserError
from zubov_bench.models import ODEConfig, ODEModel, classification_loss, register_model


@dataclass
class ConvODEConfig(ODEConfig):
    channels: int = 64


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class TimeConcatConv(nn.Module):
    """3x3 convolution whose input gets t as an extra constant channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, channels, 3, 1, 1)

    def forward(self, t, z):
        t_map = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(z.shape[0], 1, *z.shape[2:])
        return self.conv(torch.cat([t_map, z], dim=1))


class ConvField(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (group_norm(channels) for _ in range(3))
        self.conv1, self.conv2 = TimeConcatConv(channels), TimeConcatConv(channels)

    def forward(self, t, z):
        out = self.conv1(t, F.relu(self.norm1(z)))
        return self.norm3(self.conv2(t, F.relu(self.norm2(out))))


def downsampling(spec: DataSpec, channels: int) -> nn.Sequential:
    if not spec.is_image:
        raise UserError("node-conv needs image data")
    layers = [nn.Conv2d(spec.channels, channels, 3, 1, 1), group_norm(channels), nn.ReLU(),
              nn.Conv2d(channels, channels, 4, 2, 1)]
    if min(spec.input_shape[1:]) > 8:
        layers += [group_norm(channels), nn.ReLU(), nn.Conv2d(channels, channels, 4, 2, 1)]
    return nn.Sequential(*layers)


@register_model("node-conv")
class ConvNeuralODE(ODEModel):
    """Convolutional Neural ODE on 64-channel feature maps, CE only."""

    Config = ConvODEConfig
    description = "conv Neural ODE (torchdiffeq MNIST example): 64-channel map, GroupNorm-ReLU-conv(t) x2, CE only"
    recipes = {"digits": {"train": {"epochs": 6}}}  # ~10 s of CPU per epoch

    def __init__(self, spec: DataSpec, cfg: ConvODEConfig):
        super().__init__(spec, cfg, ConvField(cfg.channels))
        self.stem = downsampling(spec, cfg.channels)
        self.head = nn.Sequential(group_norm(cfg.channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(cfg.channels, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.solve(self.features(x)))

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        logits = self(self.augment(x))
        return classification_loss(logits, y)
