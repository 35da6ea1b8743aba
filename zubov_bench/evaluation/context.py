"""Everything one checkpoint's evaluation shares: model, subset, clean predictions, solver views."""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import torch

from .. import __version__
from ..checkpoint import load_checkpoint
from ..data import load_dataset
from ..errors import UserError
from ..records import Record
from .batch import predict_rows
from .plan import batch_slices, eval_subset
from .solver_view import GradientView, GradSolver, UnrollChoice, choose_unroll


@dataclass
class CheckpointContext:
    path: str
    model: torch.nn.Module
    meta: dict
    device: torch.device
    index: torch.Tensor  # dataset test indices of the subset (subset order), on CPU
    x: torch.Tensor  # on device
    y: torch.Tensor
    batch_size: int
    clean: torch.Tensor = None  # bool (n,), on CPU
    clean_failed: torch.Tensor = None
    clean_nfe: torch.Tensor = None
    clean_pred: torch.Tensor = None
    grad_solvers: list[GradSolver] = field(default_factory=list)
    unrolls: dict[int, UnrollChoice] = field(default_factory=dict)  # RK4 steps -> agreement

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def batches(self) -> list[np.ndarray]:
        return batch_slices(self.n, self.batch_size)

    def view(self, grad_solver: GradSolver | None):
        return self.model if grad_solver is None else GradientView(self.model, grad_solver)

    def record(self, **fields) -> Record:
        extra = self.meta.get("extra") or {}
        return Record(model=self.meta["model"], method=str(extra.get("method") or self.meta["model"]),
                      dataset=self.meta["data"]["name"], checkpoint=self.path,
                      checkpoint_sha256=self.meta["sha256"], train_seed=int(extra.get("seed", -1)),
                      suite_version=__version__, **fields)


def load_context(path: str, n_samples: int, batch_size: int, device: torch.device,
                 data_root=None, download=False) -> CheckpointContext:
    model, meta = load_checkpoint(path, device=device)
    model.requires_grad_(False)  # attacks need input gradients only
    data = load_dataset(meta["data"]["name"], data_root, download)
    spec = model.spec
    if tuple(data.spec.input_shape) != tuple(spec.input_shape) or data.spec.num_classes != spec.num_classes:
        raise UserError(f"checkpoint {path} expects {spec.name} inputs {tuple(spec.input_shape)} with "
                        f"{spec.num_classes} classes, but the dataset has {tuple(data.spec.input_shape)} "
                        f"with {data.spec.num_classes}")
    index = eval_subset(len(data.x_test), n_samples)
    ctx = CheckpointContext(str(path), model, meta, device, index, data.x_test[index].to(device),
                            data.y_test[index].to(device), batch_size)
    ctx.clean_pred, ctx.clean_failed, ctx.clean_nfe = predictions(ctx, model)
    ctx.clean = (ctx.clean_pred == ctx.y.cpu()) & ~ctx.clean_failed
    return ctx


def predictions(ctx: CheckpointContext, model):
    """(pred, failed, nfe) over the subset, batch by batch exactly as the attacks see it."""
    parts = [predict_rows(model, ctx.x[rows]) for rows in ctx.batches]
    return tuple(torch.cat(p) for p in zip(*parts))


def resolve_views(ctx: CheckpointContext, requested: list[GradSolver] | None) -> None:
    """Gradient views for gradient attacks: as requested, or deployed + an RK4 unroll for ODEs."""
    has_ode = getattr(ctx.model, "has_ode", False)
    if requested is not None:
        for gs in requested:
            if gs.mode != "deployed" and not has_ode:
                raise UserError(f"--grad-solver {gs} needs an ODE model; {ctx.path} has no ODE")
        ctx.grad_solvers = list(requested)
    if not has_ode:
        ctx.grad_solvers = ctx.grad_solvers or [GradSolver()]
        return

    def predict(model):
        return predictions(ctx, model)[0]

    if requested is None:
        choice = choose_unroll(ctx.model, predict, ctx.clean_pred)
        ctx.unrolls = {choice.steps: choice}
        ctx.grad_solvers = [GradSolver()]
        if not choice.same_as_deployed:
            ctx.grad_solvers.append(GradSolver("rk4", choice.steps))
        return
    for steps in sorted({gs.steps for gs in requested if gs.mode != "deployed"}):
        ctx.unrolls[steps] = choose_unroll(ctx.model, predict, ctx.clean_pred, candidates=(steps,))
