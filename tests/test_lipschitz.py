"""The stem Lipschitz bound: at least the exact norm of a strided conv, at least any ratio found by ascent."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from zubov_bench.data.base import DataSpec
from zubov_bench.errors import UserError
from zubov_bench.models import create_model
from zubov_bench.models.lipschitz import conv2d_operator_norm, sequential_lipschitz, stem_lipschitz


def dense_norm(fn, shape) -> float:
    """Exact operator norm of a linear map from its dense Jacobian (small inputs only)."""
    jac = torch.autograd.functional.jacobian(fn, torch.zeros(1, *shape, dtype=torch.float64))
    return float(torch.linalg.matrix_norm(jac.reshape(-1, torch.Size(shape).numel()), ord=2))


@pytest.mark.parametrize("stride,padding,kernel", [(2, 1, 4), (1, 1, 3), (2, 0, 3), (3, 2, 5)])
def test_conv_norm_is_the_operators_norm(stride, padding, kernel):
    torch.manual_seed(stride * 10 + kernel)
    conv = nn.Conv2d(3, 5, kernel, stride, padding, bias=True).double()
    shape = (3, 9, 9)
    exact = dense_norm(lambda x: nn.functional.conv2d(x, conv.weight, None, stride, padding), shape)
    estimate = conv2d_operator_norm(conv, shape)
    assert estimate <= exact * (1 + 1e-9)  # a Rayleigh quotient never exceeds the norm
    assert estimate == pytest.approx(exact, rel=1e-4)
    bound = sequential_lipschitz(conv, shape).value
    assert exact <= bound <= exact * 1.02


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
