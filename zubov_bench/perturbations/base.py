"""The perturbation base class: one call shape for noise and attacks, typed params, default grids."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..data.base import DataSpec
from ..errors import UserError
from ..models.modes import evaluation_mode
from .params import build_params, params_to_dict

THREATS = ("noise", "linf", "l2")
KINDS = ("noise", "white-box", "black-box", "transfer", "adaptive")
# Scheduling rank of an iterative attack of each kind when its class sets no `relative_cost`
KIND_COST = {"white-box": 2, "transfer": 3, "adaptive": 4, "black-box": 5}


@dataclass
class NoParams:
    """A perturbation without parameters besides its severity."""


class Perturbation:
    """`p(model, x, y, severity, generator, index) -> x_perturbed` (same shape, in [0, 1]).

    Subclasses set the class attributes and implement `perturb`; `__call__` validates the
    severity and handles empty batches. `model` maps [0, 1] inputs to logits, in eval mode.

    The class attributes below are the perturbation's traits: the evaluation plan, the sanity
    checks, the tables and `reproduce` read them and never test a perturbation's name, so a new
    perturbation is one file (docs/add_an_attack.md).
    """

    name: ClassVar[str] = ""  # set by @register_perturbation
    description: ClassVar[str] = ""
    threat: str = "noise"  # class default; attacks with a norm parameter set it per instance
    kind: ClassVar[str] = "noise"  # one of KINDS
    gradient_based: ClassVar[bool] = False  # differentiates the evaluated model (one run per gradient view)
    iterative: ClassVar[bool] = False  # False: a single-step attack (sanity check 2 compares against it)
    Params: ClassVar[type] = NoParams
    noise_grid: ClassVar[tuple[float, ...]] = ()  # default severities of a noise
    max_severity: ClassVar[float] = math.inf
    display_name: ClassVar[str] = ""  # table and figure label; "" shows the registry name
    severity_symbol: ClassVar[str] = ""  # a noise's severity parameter in labels, e.g. "σ"
    # Runs several attacks inside (AutoAttack holds Square): not a pure gradient attack for
    # sanity check 3 (white-box at least as strong as black-box)
    ensemble: ClassVar[bool] = False
    # Replays examples crafted on another checkpoint: `Params` has a `source` field (a checkpoint
    # path), which `eval --transfer-from` and reproduce's `eval.transfer_source` fill in. `all`
    # without a source leaves such an attack out; it is never run against its own source.
    needs_source: ClassVar[bool] = False
    # Sanity check 1 runs this perturbation (`large_eps_probe()`) at L∞ ε = 1.0, where it must
    # leave about 0 robust; one registered attack (PGD) declares it
    large_eps_check: ClassVar[bool] = False
    relative_cost: ClassVar[int | None] = None  # scheduling rank, cheapest first; None: from kind
    # A folder of the record being computed, set by the evaluation: an attack that can resume inside
    # one batch keeps its state there (AutoAttack's state file). None outside `eval`.
    work_dir: Path | None = None
    needs_images: ClassVar[bool] = False  # True: skipped on vector datasets such as toy2d
    # A name under which `eval --attack NAME` runs every member at its own grid, e.g. the
    # "corruptions" of MNIST-C; members stay out of `all`, so `all` keeps its meaning and cost
    group: ClassVar[str] = ""

    @classmethod
    def cost_rank(cls) -> int:
        """Evaluation runs cheap records first (early results, early sanity checks)."""
        if cls.relative_cost is not None:
            return cls.relative_cost
        if cls.kind == "noise":
            return 0
        return KIND_COST.get(cls.kind, 6) if cls.iterative else 1

    @classmethod
    def label(cls) -> str:
        return cls.display_name or cls.name

    @classmethod
    def large_eps_probe(cls) -> "Perturbation":
        """The instance sanity check 1 runs (classes with `large_eps_check`)."""
        return cls(norm="linf")

    def __init__(self, **params):
        self.params = build_params(self.Params, params, self.name)
        self.validate()
        norm = getattr(self.params, "norm", None)
        if norm is not None:  # attacks with a `norm` parameter take their threat from it
            self.threat = norm

    def validate(self) -> None:
        """Check parameter values; raise UserError. Override where ranges matter."""

    def check_severity(self, severity: float) -> None:
        """UserError unless `severity` is one this perturbation can run; the evaluation calls it
        for every planned severity before any record is computed."""
        if not (0.0 < severity <= self.max_severity):
            raise UserError(f"{self.name}: severity {severity:g} is outside (0, {self.max_severity:g}]")

    def prepare(self) -> None:
        """Load what the perturbation needs besides its parameters (a source checkpoint), so that
        bad input fails before any record is computed. Creating an instance loads nothing."""

    def take_flags(self) -> dict[str, str]:
        """Warnings the perturbation's own library raised since the last call (flag -> message);
        the evaluation stores them in the record's `sanity` as "<name>:<flag>"."""
        return {}

    def settings(self) -> dict:
        return params_to_dict(self.params)

    def default_severities(self, spec: DataSpec) -> tuple[float, ...]:
        if self.threat == "linf":
            return tuple(spec.eps_linf)
        if self.threat == "l2":
            return tuple(spec.eps_l2)
        return self.noise_grid

    def uses_margin_loss(self) -> bool:
        """Whether the attack, with these parameters, follows a logit-margin loss (DLR, FAB's logit
        differences). Where the softmax is saturated the cross-entropy gradient rounds to exactly 0
        but a margin's does not, so sanity check 5 counts those samples as reached by such an attack."""
        return False

    def applies_to(self, model: nn.Module) -> bool:
        """Whether to run on this model; `eval` skips the others (with a note when named)."""
        if self.needs_images:
            spec = find_attribute(model, "spec")
            return spec is None or spec.is_image
        return True

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, severity: float,
                 generator: torch.Generator, index: torch.Tensor | None = None) -> torch.Tensor:
        severity = float(severity)
        if not (0.0 <= severity <= self.max_severity):
            raise UserError(f"{self.name}: severity {severity:g} is outside [0, {self.max_severity:g}]")
        if len(x) == 0:
            return x.clone()
        with evaluation_mode(model):  # the deployed model, whatever a library inside does to the flags
            out = self.perturb(model, x, y, severity, generator, index)
        assert out.shape == x.shape, f"{self.name} changed the input shape"
        return out.detach()

    def perturb(self, model, x, y, severity, generator, index) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


class Attack(Perturbation):
    """An adversarial attack: only samples the model gets right are attacked (early exit)."""

    kind: ClassVar[str] = "white-box"
    gradient_based: ClassVar[bool] = True
    iterative: ClassVar[bool] = True
    threat: str = "linf"  # attacks with a `norm` parameter take their threat from it

    def perturb(self, model, x, y, severity, generator, index):
        x_adv = x.clone()
        correct = predict(model, x) == y
        if correct.any():
            x_adv[correct] = self.attack(model, x[correct], y[correct], severity, generator)
        return x_adv

    def attack(self, model, x, y, eps: float, generator: torch.Generator) -> torch.Tensor:
        """Adversarial versions of (x, y), all currently classified correctly."""
        raise NotImplementedError


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator))


class seeded_rng:
    """Run library code that uses torch's global RNG from a seed, then restore the global state."""

    def __init__(self, seed: int, device: torch.device):
        devices = [device.index or 0] if device.type == "cuda" else []
        self._fork = torch.random.fork_rng(devices=devices)
        self.seed = seed

    def __enter__(self):
        self._fork.__enter__()
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def require_images(name: str, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise UserError(f"{name} needs image inputs (N, C, H, W); got shape {tuple(x.shape)}. "
                        "It does not apply to vector datasets such as toy2d.")


def lp_distance(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample L∞ or L2 distance."""
    delta = (x_adv - x).reshape(len(x), -1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


def find_attribute(model: nn.Module, attr: str):
    """`attr` of the model, or of the model a wrapper (gradient view) holds; None if absent."""
    seen = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        if hasattr(model, attr):
            return getattr(model, attr)
        model = next((getattr(model, a) for a in ("model", "module", "base") if hasattr(model, a)), None)
    return None
