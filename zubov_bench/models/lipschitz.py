"""An upper bound on the L2 Lipschitz constant of a model's feature extractor phi(x) = stem(normalize(x)).

The bound is the product, over the layers of the stem, of an upper bound on each layer's L2 operator norm:
  * normalisation (x - mean) / std: max 1/std (a diagonal map);
  * Conv2d: the convolution as the linear map it is at its actual input shape (stride, padding,
    dilation and groups included; normalising the reshaped kernel, as `spectral_norm=true` does, is
    not this norm: for a strided or padded convolution it can be too small or too large). Where the
    smaller side of the map has at most DENSE_LIMIT entries, its exact norm: the dense matrix is built
    by applying the convolution (or its adjoint) to basis vectors, and the top eigenvalue of its Gram
    matrix taken in float64. Otherwise the patch bound ||W_mat||_2 * sqrt(n_h * n_w), where W_mat is the
    (C_out, C_in/groups * kh * kw) kernel matrix per group and n_h, n_w bound how many output
    positions read one input pixel (ceil(kh / stride) for dilation 1, kh otherwise): ||A x||^2 =
    sum over positions p of ||W_mat patch_p(x)||^2 <= ||W_mat||^2 sum_p ||patch_p(x)||^2 and every pixel
    appears in at most n_h * n_w patches;
  * Linear: the largest singular value of the weight (SVD, float64);
  * elementwise activations: their Lipschitz constant (1 for ReLU, softplus, tanh, ELU with
    alpha <= 1, ...); Flatten, Identity, Dropout (eval): 1; average pooling: 1 (an upper bound);
  * StemScale (the fixed factor of a budgeted stem, `bound_stem`): |scale|.
Biases do not change a Lipschitz constant. Layers with no global bound (GroupNorm, BatchNorm in
training, attention, ...) are refused with a UserError instead of a made-up number.

Soundness: every factor is an upper bound in exact arithmetic; the float64 eigenvalue and SVD
routines are backward stable (relative error ~1e-13 here), so each computed norm is multiplied by
ROUNDING = 1 + 1e-6. Power iteration (`conv2d_operator_norm`) gives a *lower* bound of a
convolution's norm (a Rayleigh quotient never exceeds it); it is kept as a cross-check of the
upper bound (tests/test_lipschitz.py), not used in the bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from ..errors import UserError

SAFETY = 1.0 + 1e-6  # ROUNDING: float64 SVD / eigenvalue error, far below this margin
ROUNDING = SAFETY
DENSE_LIMIT = 8192  # exact conv norm when min(input size, output size) <= this (a Gram matrix of that side)
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
        return f"L <= {self.value:.4g} (product of: {parts}; each computed norm x{self.safety:g})"


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


def _conv_args(conv: nn.Conv2d) -> dict:
    if conv.padding_mode != "zeros":
        raise UserError(f"no Lipschitz bound for a convolution with padding_mode={conv.padding_mode!r}")
    if isinstance(conv.padding, str):
        raise UserError(f"no Lipschitz bound for a convolution with padding={conv.padding!r}")
    return dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)


@torch.no_grad()
def conv2d_dense_norm(conv: nn.Conv2d, input_shape: tuple[int, ...], chunk: int = 512) -> float:
    """The exact ||conv||_2 (bias excluded) on inputs of shape (C, H, W), from the Gram matrix of the
    smaller side of the dense operator (its columns are the convolution of basis vectors)."""
    args = _conv_args(conv)
    weight = conv.weight.detach().double().cpu()
    n_in = math.prod(input_shape)
    out_shape = F.conv2d(torch.zeros(1, *input_shape, dtype=torch.float64), weight, **args).shape[1:]
    n_out = math.prod(out_shape)
    if n_in <= n_out:  # A^T A (n_in x n_in): columns A e_i
        cols = [F.conv2d(torch.eye(n_in, dtype=torch.float64)[i:i + chunk].reshape(-1, *input_shape),
                         weight, **args).reshape(-1, n_out) for i in range(0, n_in, chunk)]
    else:  # A A^T (n_out x n_out): rows of A are A^T e_j, the adjoint of the basis vectors
        eye = torch.eye(n_out, dtype=torch.float64)
        cols = []
        for i in range(0, n_out, chunk):
            e = eye[i:i + chunk].reshape(-1, *out_shape).requires_grad_(False)
            x = torch.zeros(len(e), *input_shape, dtype=torch.float64, requires_grad=True)
            with torch.enable_grad():  # the adjoint by autograd: exact, whatever the output padding
                (F.conv2d(x, weight, **args) * e).sum().backward()
            cols.append(x.grad.reshape(len(e), n_in))
    m = torch.cat(cols)
    top = float(torch.linalg.eigvalsh(m @ m.T)[-1])
    return math.sqrt(max(top, 0.0))


def conv2d_patch_bound(conv: nn.Conv2d) -> float:
    """||W_mat||_2 * sqrt(n_h n_w): an upper bound on ||conv||_2 for every input size (module docstring)."""
    _conv_args(conv)
    weight = conv.weight.detach().double().cpu()
    groups, c_out = conv.groups, weight.shape[0]
    per_group = weight.reshape(groups, c_out // groups, -1)
    top = max(float(torch.linalg.matrix_norm(w, ord=2)) for w in per_group)  # block-diagonal over groups
    return top * math.sqrt(_patch_cover(conv))


def conv2d_upper_bound(conv: nn.Conv2d, input_shape: tuple[int, ...], dense_limit: int = DENSE_LIMIT) -> float:
    """A sound upper bound on ||conv||_2 at this input shape (before the rounding margin)."""
    patch = conv2d_patch_bound(conv)
    n_in = math.prod(input_shape)
    n_out = math.prod(F.conv2d(torch.zeros(1, *input_shape, dtype=torch.float64),
                               conv.weight.detach().double().cpu(), **_conv_args(conv)).shape[1:])
    if min(n_in, n_out) <= dense_limit:
        return min(patch, conv2d_dense_norm(conv, input_shape))
    return patch


def linear_operator_norm(linear: nn.Linear) -> float:
    return float(torch.linalg.matrix_norm(linear.weight.detach().double(), ord=2))


def layers_of(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf layers of nested nn.Sequential containers, in order, with their dotted names."""
    if isinstance(module, nn.Sequential):
        return [(f"{name}.{sub}" if sub else name, leaf) for name, child in module.named_children()
                for sub, leaf in layers_of(child)]
    return [("", module)]


def sequential_lipschitz(module: nn.Module, input_shape: tuple[int, ...], safety: float = SAFETY) -> LipschitzBound:
    """The bound for an nn.Sequential (or a single layer) applied to inputs of `input_shape` (no batch)."""
    factors = []
    first = next(iter(module.parameters()), torch.zeros(()))
    x = torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype)  # only carries the shapes
    for name, layer in layers_of(module):
        kind = type_before_parametrizations(layer).__name__  # ParametrizedConv2d (spectral_norm) -> Conv2d
        label = f"{name} ({kind})" if name else kind
        if isinstance(layer, nn.Conv2d):
            factors.append((label, safety * conv2d_upper_bound(layer, tuple(x.shape[1:]))))
        elif isinstance(layer, nn.Linear):
            factors.append((label, safety * linear_operator_norm(layer)))
        elif type(layer) in ACTIVATION_LIPSCHITZ:
            constant = ACTIVATION_LIPSCHITZ[type(layer)](layer)
            if constant != 1.0:
                factors.append((label, constant))
        elif isinstance(layer, StemScale):
            factors.append((label, abs(float(layer.scale))))
        else:
            raise UserError(f"no sound Lipschitz bound for layer {label}: it has no global Lipschitz "
                            "constant here (or this analysis does not know it)")
        with torch.no_grad():
            x = layer(x)
    value = math.prod(f for _, f in factors)
    return LipschitzBound(value, factors, safety)


class StemScale(nn.Module):
    """x -> scale * x, a fixed factor (a buffer, not trained): the budget's share of a bounded stem."""

    def __init__(self, scale: float):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x):
        return x * self.scale


class SoundNormalized(nn.Module):
    """A weight parametrization W -> W / max(1, b(W)), b the sound operator-norm bound this module
    uses for the layer at every input size: ||W||_2 for a Linear, the patch bound ||W_mat||_2 *
    sqrt(n_h n_w) for a Conv2d (`conv2d_patch_bound`). Differentiable (the top singular value by
    SVD), so the stem trains with every layer's bound <= 1, unlike torch's spectral_norm, which
    normalises the reshaped kernel (a strided conv's norm can be twice that) by a power-iteration
    estimate from below. The certificate does not rely on it: it recomputes the bound of the
    parametrized weight in float64 (`stem_lipschitz`)."""

    def __init__(self, groups: int = 1, cover: int = 1):
        super().__init__()
        self.groups, self.cover = groups, cover

    def forward(self, weight):
        if weight.dim() == 2:
            bound = torch.linalg.matrix_norm(weight, ord=2)
        else:
            per_group = weight.reshape(self.groups, weight.shape[0] // self.groups, -1)
            bound = torch.linalg.matrix_norm(per_group, ord=2).max() * math.sqrt(self.cover)
        return weight / bound.clamp_min(1.0)


def _patch_cover(conv: nn.Conv2d) -> int:
    cover = 1
    for k, s, d in zip(conv.kernel_size, conv.stride, conv.dilation):
        cover *= -(-k // s) if d == 1 else k
    return cover


def bound_stem(model, budget: float) -> None:
    """Give `model.stem` a sound L2 Lipschitz budget, its input normalisation included: every Conv2d
    and Linear is parametrized to a bound <= 1 (`SoundNormalized`), and a fixed StemScale of
    budget * min(std) / (the activations' constants) follows, so stem_lipschitz(model) <= budget
    (up to the 1e-6 rounding margin; less where a convolution's exact norm is below its patch bound).
    A layer without a global bound (GroupNorm, ...) is refused with a UserError."""
    from torch.nn.utils import parametrize

    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise UserError(f"stem_lipschitz must be a positive number, got {budget!r}")
    if getattr(model.cfg, "spectral_norm", False):
        raise UserError("stem_lipschitz and spectral_norm both normalise the stem; set only stem_lipschitz "
                        "(spectral_norm's bound is not sound, docs/certify.md)")
    stem = getattr(model, "stem", None)
    if stem is None or not hasattr(model, "normalize"):
        raise UserError(f"{type(model).__name__} has no stem to bound (it needs `normalize` and `stem`)")
    activations = 1.0
    for name, layer in layers_of(stem):
        if isinstance(layer, nn.Conv2d):
            _conv_args(layer)
            parametrize.register_parametrization(layer, "weight", SoundNormalized(layer.groups, _patch_cover(layer)))
        elif isinstance(layer, nn.Linear):
            parametrize.register_parametrization(layer, "weight", SoundNormalized())
        elif type(layer) in ACTIVATION_LIPSCHITZ:
            activations *= ACTIVATION_LIPSCHITZ[type(layer)](layer)
        else:
            kind = type(layer).__name__
            raise UserError(f"stem_lipschitz cannot bound the stem's layer {name or kind} ({kind}): it has no "
                            "global Lipschitz constant here; use stem=conv or stem=mlp")
    min_std = float(model.normalize.std.min())
    model.stem = nn.Sequential(stem, StemScale(budget * min_std / activations))


def stem_lipschitz(model, safety: float = SAFETY) -> LipschitzBound:
    """Bound on ||phi(x) - phi(x')|| / ||x - x'|| for raw inputs, phi = model.features (normalisation + stem)."""
    stem = getattr(model, "stem", None)
    if stem is None or not hasattr(model, "normalize"):
        raise UserError(f"{type(model).__name__} has no stem to bound (it needs `normalize` and `stem`)")
    inverse_std = float((1.0 / model.normalize.std).max())
    bound = sequential_lipschitz(stem, tuple(model.spec.input_shape), safety)
    factors = [("normalize (1/std)", inverse_std)] + bound.factors
    return LipschitzBound(inverse_std * bound.value, factors, safety)
