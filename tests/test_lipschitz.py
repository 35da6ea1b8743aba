"""The stem Lipschitz bound: at least the exact (brute-force dense) norm of a strided conv, by both the
dense and the patch bound; at least any ratio found by ascent; power iteration stays below it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from zubov_bench.data.base import DataSpec
from zubov_bench.errors import UserError
from zubov_bench.models import create_model
from zubov_bench.models.lipschitz import (conv2d_operator_norm, conv2d_patch_bound, conv2d_upper_bound,
                                          sequential_lipschitz, stem_lipschitz)


def dense_norm(fn, shape) -> float:
    """Exact operator norm of a linear map from its dense Jacobian (small inputs only)."""
    jac = torch.autograd.functional.jacobian(fn, torch.zeros(1, *shape, dtype=torch.float64))
    return float(torch.linalg.matrix_norm(jac.reshape(-1, torch.Size(shape).numel()), ord=2))


@pytest.mark.parametrize("stride,padding,kernel,dilation,groups", [
    (2, 1, 4, 1, 1), (1, 1, 3, 1, 1), (2, 0, 3, 1, 1), (3, 2, 5, 1, 1), (1, 2, 3, 2, 1), (2, 1, 3, 1, 3)])
def test_conv_bounds_hold_against_the_dense_operator(stride, padding, kernel, dilation, groups):
    torch.manual_seed(stride * 10 + kernel + dilation)
    conv = nn.Conv2d(3, 6, kernel, stride, padding, dilation=dilation, groups=groups, bias=True).double()
    shape = (3, 9, 9)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    exact = dense_norm(lambda x: nn.functional.conv2d(x, conv.weight, None, **args), shape)
    estimate = conv2d_operator_norm(conv, shape)
    assert estimate <= exact * (1 + 1e-9)  # a Rayleigh quotient never exceeds the norm: no upper bound
    assert estimate == pytest.approx(exact, rel=1e-3)  # it can stall a little below (1.2e-4 here)
    assert conv2d_upper_bound(conv, shape) == pytest.approx(exact, rel=1e-9)  # the dense path is exact
    patch = conv2d_patch_bound(conv)
    assert patch >= exact * (1 - 1e-12)  # sound for every input size
    assert conv2d_upper_bound(conv, shape, dense_limit=0) == patch
    bound = sequential_lipschitz(conv, shape).value
    assert exact <= bound <= exact * (1 + 1e-5)


def test_patch_bound_is_tight_for_a_non_overlapping_conv():
    """stride = kernel: every pixel is read once, so the operator is block-diagonal in W_mat."""
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 4, 2, 2, 0).double()
    exact = dense_norm(lambda x: nn.functional.conv2d(x, conv.weight, None, 2, 0), (2, 8, 8))
    assert conv2d_patch_bound(conv) == pytest.approx(exact, rel=1e-9)


def test_reshaped_kernel_norm_is_not_the_strided_operators_norm():
    """What spectral_norm=true normalises differs from the operator norm of a strided conv."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 32, 4, 2, 1).double()
    shape = (1, 12, 12)
    exact = dense_norm(lambda x: nn.functional.conv2d(x, conv.weight, None, 2, 1), shape)
    reshaped = float(torch.linalg.matrix_norm(conv.weight.detach().reshape(32, -1), ord=2))
    assert abs(reshaped - exact) > 0.05 * exact
    assert sequential_lipschitz(conv, shape).value >= exact


def empirical_ratio(phi, x: torch.Tensor, steps: int = 60) -> float:
    """max ||phi(a) - phi(b)|| / ||a - b|| by gradient ascent from pairs of nearby test points."""
    a = x.clone().requires_grad_(True)
    b = (x + 0.01 * torch.randn_like(x)).requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=0.01)
    best = 0.0
    for _ in range(steps):
        ratio = (phi(a) - phi(b)).flatten(1).norm(dim=1) / (a - b).flatten(1).norm(dim=1).clamp_min(1e-9)
        best = max(best, float(ratio.detach().max()))
        opt.zero_grad()
        (-ratio.sum()).backward()
        opt.step()
    return best


def test_stem_bound_holds_on_a_trained_mlp_stem(trained_node, digits):
    bound = stem_lipschitz(trained_node)
    assert bound.factors[0][0].startswith("normalize")
    found = empirical_ratio(trained_node.features, digits.x_test[:64])
    assert 0 < found <= bound.value
    # the normalisation matters: without 1/std the product would be below what ascent finds here
    assert bound.value / bound.factors[0][1] < found


def test_stem_bound_holds_on_a_conv_stem():
    spec = DataSpec(name="fake-mnist", input_shape=(1, 16, 16), num_classes=10, mean=(0.3,), std=(0.35,))
    torch.manual_seed(0)
    model = create_model("node", spec, stem="conv", spectral_norm=True).eval()
    bound = stem_lipschitz(model)
    assert [name for name, _ in bound.factors][1:] == ["0.0 (Conv2d)", "0.2 (Conv2d)", "1 (Linear)"]
    found = empirical_ratio(model.features, torch.rand(32, 1, 16, 16))
    assert found <= bound.value


def test_layers_without_a_global_bound_are_refused():
    spec = DataSpec(name="fake-cifar", input_shape=(3, 16, 16), num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)
    model = create_model("node", spec, stem="resnet")
    with pytest.raises(UserError, match="no sound Lipschitz bound"):
        stem_lipschitz(model)


def test_a_stem_lipschitz_budget_is_a_sound_bound_that_trains_and_reloads():
    """stem_lipschitz=B (models/lipschitz.bound_stem): the certified bound of the built stem is at most B,
    ascent finds no larger ratio, the weights still get gradients, and a state dict reloads."""
    spec = DataSpec(name="fake-mnist", input_shape=(1, 16, 16), num_classes=10, mean=(0.3,), std=(0.35,))
    torch.manual_seed(0)
    model = create_model("zubov", spec, stem="conv", stem_lipschitz=0.5, lyap_width=16, field_hidden=16).eval()
    bound = stem_lipschitz(model)
    assert bound.factors[-1][0] == "1 (StemScale)" and bound.value <= 0.5 * (1 + 1e-5)
    assert empirical_ratio(model.features, torch.rand(32, 1, 16, 16)) <= bound.value
    loose = create_model("zubov", spec, stem="conv", lyap_width=16, field_hidden=16)
    assert stem_lipschitz(loose).value > 2  # without a budget the same stem is far from it
    model.train()
    model.features(torch.rand(4, 1, 16, 16)).sum().backward()
    first = model.stem[0][0][0].parametrizations.weight.original
    assert first.grad is not None and first.grad.abs().sum() > 0
    twin = create_model("zubov", spec, stem="conv", stem_lipschitz=0.5, lyap_width=16, field_hidden=16)
    twin.load_state_dict(model.state_dict())
    x = torch.rand(4, 1, 16, 16)
    assert torch.equal(twin.eval().features(x), model.eval().features(x))


@pytest.mark.parametrize("overrides,message", [
    ({"stem": "resnet", "stem_lipschitz": 1.0}, "cannot bound the stem's layer"),
    ({"stem": "conv", "stem_lipschitz": 1.0, "spectral_norm": True}, "set only stem_lipschitz"),
    ({"stem": "conv", "stem_lipschitz": -1.0}, "must be a positive number"),
])
def test_a_stem_budget_that_cannot_hold_is_refused(overrides, message):
    spec = DataSpec(name="fake-cifar", input_shape=(3, 16, 16), num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)
    with pytest.raises(UserError, match=message):
        create_model("node", spec, **overrides)
