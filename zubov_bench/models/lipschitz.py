"""An upper bound on the L2 Lipschitz constant of a model's feature extractor phi(x) = stem(normalize(x)).

The bound is the product, over the layers of the stem, of each layer's L2 operator norm:
  * normalisation (x - mean) / std: max 1/std (a diagonal map);
  * Conv2d: the norm of the convolution as the linear map it is at its actual input shape, stride,
    padding, dilation and groups included, by power iteration with conv2d and its adjoint
    conv_transpose2d (normalising the reshaped kernel, as `spectral_norm=true` does, is not this norm:
    for a strided or padded convolution it can be too small or too large);
  * Linear: the largest singular value of the weight (SVD);
  * elementwise activations: their Lipschitz constant (1 for ReLU, softplus, tanh, ELU with
    alpha <= 1, ...); Flatten, Identity, Dropout (eval): 1; average pooling: 1 (an upper bound).
Biases do not change a Lipschitz constant. Layers with no global bound (GroupNorm, BatchNorm in
training, attention, ...) are refused with a UserError instead of a made-up number.

Soundness: a power-iteration estimate ||A v|| / ||v|| never exceeds ||A||; it approaches it from below
as the iteration converges. We iterate until the estimate changes by less than `tol` (relative) and
multiply every estimated norm by `safety` (default 1.01). The bound is therefore sound only up to that
factor: if the power iteration stalled more than 1% below the top singular value (a start vector
nearly orthogonal to the top singular vector, or a very slow spectral gap), it could be too small.
The SVD of a Linear weight and the activation constants are exact; floating-point rounding is ignored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from ..errors import UserError

SAFETY = 1.01
TOL = 1e-7
MAX_ITERS = 2000

# elementwise activations: module type -> Lipschitz constant as a function of the module
ACTIVATION_LIPSCHITZ = {
    nn.ReLU: lambda m: 1.0, nn.Softplus: lambda m: 1.0, nn.Tanh: lambda m: 1.0, nn.Sigmoid: lambda m: 0.25,
    nn.ELU: lambda m: max(1.0, m.alpha), nn.LeakyReLU: lambda m: max(1.0, abs(m.negative_slope)),
    nn.SiLU: lambda m: 1.1, nn.GELU: lambda m: 1.13, nn.Hardtanh: lambda m: 1.0,
    nn.Identity: lambda m: 1.0, nn.Flatten: lambda m: 1.0, nn.Dropout: lambda m: 1.0,
    nn.AdaptiveAvgPool2d: lambda m: 1.0, nn.AvgPool2d: lambda m: 1.0,
}


@dataclass
class LipschitzBound:
    value: float  # the product of the factors
    factors: list[tuple[str, float]] = field(default_factory=list)  # (layer, its bound), in order
    safety: float = SAFETY

    def describe(self) -> str:
        parts = ", ".join(f"{name} {factor:.3g}" for name, factor in self.factors)
        return f"L <= {self.value:.4g} (product of: {parts}; power iterations x{self.safety:g})"


@torch.no_grad()
def conv2d_operator_norm(conv: nn.Conv2d, input_shape: tuple[int, ...], tol: float = TOL,
                         max_iters: int = MAX_ITERS, seed: int = 0) -> float:
    """||conv||_2 (bias excluded) on inputs of shape (C, H, W), by power iteration on A^T A.

    Returns the converged Rayleigh estimate, a lower bound of the true norm (see the module docstring).
    """
    if conv.padding_mode != "zeros":
        raise UserError(f"no Lipschitz bound for a convolution with padding_mode={conv.padding_mode!r}")
    weight = conv.weight.detach().double()
    if isinstance(conv.padding, str):  # "same" / "valid": compute the explicit padding from the shapes
        raise UserError(f"no Lipschitz bound for a convolution with padding={conv.padding!r}")
    args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *input_shape, generator=g, dtype=torch.float64).to(weight.device)
    out_shape = F.conv2d(x, weight, **args).shape
    # conv_transpose2d needs output_padding to return exactly the input's height and width
    output_padding = tuple(
        input_shape[1 + i] - ((out_shape[2 + i] - 1) * conv.stride[i] - 2 * conv.padding[i]
                              + conv.dilation[i] * (conv.kernel_size[i] - 1) + 1) for i in range(2))
    x = x / x.norm()
    estimate = 0.0
    for _ in range(max_iters):
        y = F.conv2d(x, weight, **args)
        new = float(y.norm())
        x = F.conv_transpose2d(y, weight, output_padding=output_padding, **args)
        x = x / x.norm().clamp_min(1e-300)
        if abs(new - estimate) <= tol * max(new, 1e-300):
            return new
        estimate = new
    return estimate


def linear_operator_norm(linear: nn.Linear) -> float:
    return float(torch.linalg.matrix_norm(linear.weight.detach().double(), ord=2))


def layers_of(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf layers of nested nn.Sequential containers, in order, with their dotted names."""
    if isinstance(module, nn.Sequential):
        return [(f"{name}.{sub}" if sub else name, leaf) for name, child in module.named_children()
                for sub, leaf in layers_of(child)]
    return [("", module)]


def sequential_lipschitz(module: nn.Module, input_shape: tuple[int, ...], safety: float = SAFETY,
                         tol: float = TOL, max_iters: int = MAX_ITERS) -> LipschitzBound:
    """The bound for an nn.Sequential (or a single layer) applied to inputs of `input_shape` (no batch)."""
    factors = []
    first = next(iter(module.parameters()), torch.zeros(()))
    x = torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype)  # only carries the shapes
    for name, layer in layers_of(module):
        kind = type_before_parametrizations(layer).__name__  # ParametrizedConv2d (spectral_norm) -> Conv2d
        label = f"{name} ({kind})" if name else kind
        if isinstance(layer, nn.Conv2d):
            factors.append((label, safety * conv2d_operator_norm(layer, tuple(x.shape[1:]), tol, max_iters)))
        elif isinstance(layer, nn.Linear):
            factors.append((label, safety * linear_operator_norm(layer)))
        elif type(layer) in ACTIVATION_LIPSCHITZ:
            constant = ACTIVATION_LIPSCHITZ[type(layer)](layer)
            if constant != 1.0:
                factors.append((label, constant))
        else:
            raise UserError(f"no sound Lipschitz bound for layer {label}: it has no global Lipschitz "
                            "constant here (or this analysis does not know it)")
        with torch.no_grad():
            x = layer(x)
    value = math.prod(f for _, f in factors)
    return LipschitzBound(value, factors, safety)


def stem_lipschitz(model, safety: float = SAFETY, tol: float = TOL, max_iters: int = MAX_ITERS) -> LipschitzBound:
    """Bound on ||phi(x) - phi(x')|| / ||x - x'|| for raw inputs, phi = model.features (normalisation + stem)."""
    stem = getattr(model, "stem", None)
    if stem is None or not hasattr(model, "normalize"):
        raise UserError(f"{type(model).__name__} has no stem to bound (it needs `normalize` and `stem`)")
    inverse_std = float((1.0 / model.normalize.std).max())
    bound = sequential_lipschitz(stem, tuple(model.spec.input_shape), safety, tol, max_iters)
    factors = [("normalize (1/std)", inverse_std)] + bound.factors
    return LipschitzBound(inverse_std * bound.value, factors, safety)
