"""Attacks and certificates measure the deployed model: a library that flips a model to training
mode (torchattacks restores the flag of the wrapper it is given, which a new module has on) must
not leave dropout switched on for the predictions that follow (LyaNet's robust accuracies were
random from run to run because of it)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from zubov_bench.models.modes import evaluation_mode
from zubov_bench.perturbations import create_perturbation


class DropoutNet(nn.Module):
    """A tiny classifier whose predictions are random in training mode."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 3))

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(64, 1, 4, 4, generator=g), torch.randint(3, (64,), generator=g)


@pytest.mark.parametrize("name, params", [("fgsm", {}), ("pgd", {"steps": 3}), ("pgd-l2", {"steps": 3})])
def test_a_torchattacks_attack_leaves_the_model_in_eval_mode_and_repeats_exactly(name, params, batch):
    x, y = batch
    model = DropoutNet().eval()
    attack = create_perturbation(name, **params)
    eps = 0.5 if name == "pgd-l2" else 0.1
    first = attack(model, x, y, eps, torch.Generator().manual_seed(0))
    assert not any(m.training for m in model.modules()), "the attack left the model in training mode"
    second = attack(model, x, y, eps, torch.Generator().manual_seed(0))
    assert torch.equal(first, second)
    with torch.no_grad():
        assert torch.equal(model(first), model(second))


def test_evaluation_mode_restores_each_modules_own_flag():
    model = DropoutNet().train()
    model.body[3].eval()  # a caller's frozen layer inside a training model
    with evaluation_mode(model):
        assert not any(m.training for m in model.modules())
        model.train()  # what a library may do inside
    assert model.training and not model.body[3].training and model.body[1].training


def test_smoothing_counts_the_deployed_classifier(batch):
    from zubov_bench.evaluation.certify import SmoothingSettings, certify

    x, y = batch
    model = DropoutNet().train()  # as a caller might hand it over
    model.spec = type("Spec", (), {"num_classes": 3})()
    settings = SmoothingSettings(sigma=0.25, n0=10, n=50, alpha=0.001)
    index = torch.arange(len(x))
    first = certify(model, x, y, index, settings, seed=0, batch_size=100)
    second = certify(model, x, y, index, settings, seed=0, batch_size=100)
    assert (first["prediction"] == second["prediction"]).all() and (first["radius"] == second["radius"]).all()
    assert model.training  # handed back as it came
