"""The one model interface every model in the suite implements, and its config handling."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from ..config import coerce, flatten_dotted  # the one coercion of typed settings
from ..data.base import DataSpec
from ..errors import UserError
from .ode import CountingField, SolverConfig, SolverMixin, integrate

LossFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class ODEConfig:
    """Settings shared by every ODE model: state width, stem, vector field and solver."""

    d: int = 64  # state dimension
    stem: str = "auto"  # auto | mlp | conv | resnet | identity
    stem_width: int = 128
    spectral_norm: bool = False  # Lipschitz control of the stem (torch's; not a sound bound, docs/certify.md)
    stem_lipschitz: float = 0.0  # > 0: a sound L2 Lipschitz budget of normalisation + stem (models/lipschitz.py)
    field_hidden: int = 128
    field_act: str = "softplus"  # softplus | tanh | elu | relu
    solver: str = "rk4"
    steps: int = 10
    T: float = 1.0
    rtol: float = 1e-3
    atol: float = 1e-4
    adjoint: bool = False
    max_num_steps: int = 2000  # adaptive solvers: fail (SolverError) past this many steps
    noise_aug: float = 0.0  # probability of Gaussian-noise augmentation during training
    noise_sigmas: tuple = (50 / 255, 75 / 255, 100 / 255)
    # A setting added to a config after checkpoints of it exist, with the value that leaves a model
    # as it was before the setting: while a model holds that value its checkpoint's content hash
    # leaves the setting out, so retraining an older run gives the same sha256 and finds its
    # records. Subclasses add their own; entries are never changed or removed, or stored hashes stop
    # matching (checkpoint.identity_settings; tests/data/hashed_settings.json pins them).
    hash_neutral: ClassVar[dict[str, object]] = {}

    def solver_config(self) -> SolverConfig:
        return SolverConfig(self.solver, self.steps, self.rtol, self.atol, self.T, self.adjoint,
                            self.max_num_steps)


@dataclass
class Stage:
    """One stage of a training recipe: which parameters to train with which loss."""

    name: str
    loss: LossFn
    params: Callable[[], Iterable[nn.Parameter]]
    epoch_fraction: float = 1.0
    setup: Callable[[], None] = field(default=lambda: None)


def make_config(config_cls, overrides: dict):
    overrides = flatten_dotted(overrides, getattr(config_cls, "nested", {}), config_cls.__qualname__)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)} for {config_cls.__qualname__}; "
                        f"valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(config_cls)
    return config_cls(**{k: coerce(v, hints[k], k) for k, v in overrides.items()})


def batch_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.detach().argmax(1) == y).float().mean())


def classification_loss(logits: torch.Tensor, y: torch.Tensor):
    """Cross-entropy and the terms every classifier logs: (loss, {"cls", "acc"})."""
    loss = F.cross_entropy(logits, y)
    return loss, {"cls": float(loss.detach()), "acc": batch_accuracy(logits, y)}


class Normalize(nn.Module):
    def __init__(self, spec: DataSpec):
        super().__init__()
        shape = (1, -1, 1, 1) if spec.is_image else (1, -1)
        mean = torch.tensor(spec.mean).reshape(shape)
        std = torch.tensor(spec.std).reshape(shape)
        if not spec.is_image:  # vector data: one statistic per coordinate or a scalar
            mean, std = mean.reshape(1, -1), std.reshape(1, -1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        return (x - self.mean) / self.std


class BenchModel(nn.Module):
    """Base class: raw inputs in [0, 1] -> logits; `training_loss` -> (loss, named terms).

    Subclasses set `Config` (a dataclass), `description`, and implement `forward`
    and `training_loss`. ODE models also set `self.odefunc` and use `self.solve`.
    """

    Config: ClassVar[type] = ODEConfig
    description: ClassVar[str] = ""
    registry_name: ClassVar[str] = ""
    has_ode: ClassVar[bool] = False
    # True: the class provides every member of models.protocols.LyapunovModel (checked at registration)
    has_lyapunov: ClassVar[bool] = False
    # The model's own per-dataset recipes, beside its @register_model (as timm keeps default configs):
    # {"*" or DATASET: {"train": {...}, "model": {...}}}, over the dataset presets of presets.py.
    # Not inherited: a subclass registered under another name states its own.
    recipes: ClassVar[dict[str, dict]] = {}
    # The loss terms (keys of `training_loss`'s dict, `train_<term>` in metrics.csv) that define the
    # method: each must be non-zero in some epoch of every run, or the method did not really train.
    loss_terms: ClassVar[tuple[str, ...]] = ("cls",)

    def __init__(self, spec: DataSpec, cfg):
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        self.normalize = Normalize(spec)
        self.epoch = 0

    # --- hooks the trainer uses -------------------------------------------------------
    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        raise NotImplementedError

    def training_stages(self) -> list[Stage]:
        return [Stage("main", self.training_loss, self.parameters)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def check_schedule(self, epochs: int) -> None:
        """Refuse (UserError) a run of `epochs` epochs in which part of the recipe would never run.

        Every stage needs at least one epoch; models with their own epoch-based schedule extend this.
        """
        stages = self.training_stages()
        if len(stages) > epochs:
            raise UserError(f"{self.registry_name}: its {len(stages)} training stages "
                            f"({', '.join(s.name for s in stages)}) need at least {len(stages)} epochs, "
                            f"got {epochs}; the later stages would never run")

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Optional Gaussian-noise augmentation (TisODE's recipe), controlled by cfg.noise_aug."""
        p = getattr(self.cfg, "noise_aug", 0.0)
        if not self.training or p <= 0:
            return x
        sigmas = torch.tensor(self.cfg.noise_sigmas, device=x.device)
        pick = torch.randint(len(sigmas), (x.shape[0],), device=x.device)
        on = (torch.rand(x.shape[0], device=x.device) < p).float()
        sigma = (sigmas[pick] * on).reshape(-1, *([1] * (x.dim() - 1)))
        return (x + sigma * torch.randn_like(x)).clamp(0, 1)


class ODEModel(SolverMixin, BenchModel):
    """A BenchModel with a vector field in `self.odefunc` and a swappable solver."""

    has_ode = True

    def __init__(self, spec: DataSpec, cfg: ODEConfig, field_module: nn.Module):
        super().__init__(spec, cfg)
        self.odefunc = CountingField(field_module)
        self.solver = cfg.solver_config()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """z0 = phi(x): normalise the raw input inside the model, then apply `self.stem`."""
        with record_function("features"):
            return self.stem(self.normalize(x))

    def solve(self, z0: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        with record_function("ode"):
            return integrate(self.odefunc, z0, self.solver, times)

    def grid(self, n_points: int) -> torch.Tensor:
        """n_points times on [0, T] that fall on the fixed-step grid when possible."""
        return torch.linspace(0.0, self.solver.T, n_points)
