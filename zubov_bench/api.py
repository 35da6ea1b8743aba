"""The notebook API: `evaluate(model_or_checkpoint, ...)` and `load_results(path) -> DataFrame`.

`evaluate` takes what RobustBench's `benchmark(model, ...)` takes: an `nn.Module` mapping [0, 1]
inputs to logits (a registered zubov-bench model or any other module) or a checkpoint path, and
runs the same protocol as `zubov-bench eval` (docs/evaluation.md). See docs/python-api.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .errors import UserError
from .records import Record


@dataclass
class EvalOptions:
    """Everything `evaluate` needs besides the model, the dataset and the attacks (eval's flags)."""
    eps: object = None  # None: each attack's grid for the dataset; "0.1,0.3" or a list of floats
    n_samples: int = 500
    batch_size: int = 250
    seed: int = 0
    device: str = "auto"
    grad_solver: object = None
    out: str | Path = "results/eval"
    force: bool = False
    data_root: str | None = None
    download: bool = False
    progress: bool = True
    jobs: int = 1  # worker processes; checkpoint paths only (a module is not sent to workers)
    name: str | None = None  # the module's model/method name in records (default: its class name)


class _ForeignModel(torch.nn.Module):
    """A module from outside the registry, given the dataset's spec so attacks can read the shapes;
    it declares no traits (no ODE, no Lyapunov functions), so only attacks that need none apply."""

    def __init__(self, module: torch.nn.Module, spec):
        super().__init__()
        self.module = module
        self.spec = spec

    def forward(self, x):
        return self.module(x)


def evaluate(model_or_checkpoint, dataset: str | None = None, attacks="all",
             options: EvalOptions | None = None) -> list[Record]:
    """Evaluate a module or checkpoint(s); returns this evaluation's records (worst case included).

    A module needs `dataset` (its test split is the evaluation set); a checkpoint knows its own.
    Records go to `options.out` as with `zubov-bench eval`, so a second call resumes.
    """
    from .evaluation import runner

    opts = options or EvalOptions()
    if isinstance(model_or_checkpoint, torch.nn.Module):
        return _evaluate_module(model_or_checkpoint, dataset, attacks, opts)
    if dataset is not None:
        raise UserError("a checkpoint knows its dataset; pass dataset= only with a module")
    kwargs = {k: v for k, v in asdict(opts).items() if k != "name"}
    return runner.evaluate(model_or_checkpoint, attacks=attacks, **kwargs)


def _evaluate_module(module: torch.nn.Module, dataset, attacks, opts: EvalOptions) -> list[Record]:
    from .checkpoint import state_hash
    from .data import load_dataset
    from .device import deterministic_algorithms, resolve_device
    from .evaluation import runner
    from .evaluation.context import CheckpointContext, predictions, resolve_views
    from .evaluation.plan import eval_subset, parse_attacks, parse_eps
    from .evaluation.solver_view import parse_grad_solvers
    from .evaluation.store import ResultsStore, check_writable_target
    from .io import log_to_stderr
    from .models.modes import evaluation_mode
    from .models.protocols import is_lyapunov_model

    if dataset is None:
        raise UserError("evaluate(module, ...) needs dataset=, e.g. dataset='digits'")
    if opts.jobs != 1:
        raise UserError("options.jobs > 1 needs checkpoint paths; a module is evaluated in this process")
    runner.validate_sizes(opts.n_samples, opts.batch_size, opts.seed)
    eps = parse_eps(opts.eps)
    requests = parse_attacks(attacks, None)
    dev = resolve_device(opts.device)
    data = load_dataset(dataset, opts.data_root, opts.download)
    model = module if hasattr(module, "spec") else _ForeignModel(module, data.spec)
    if tuple(model.spec.input_shape) != tuple(data.spec.input_shape):
        raise UserError(f"the model expects inputs {tuple(model.spec.input_shape)}, "
                        f"{dataset} has {tuple(data.spec.input_shape)}")
    name = opts.name or getattr(module, "registry_name", None) or type(module).__name__
    config = module.config_dict() if hasattr(module, "config_dict") else {}
    grad_flags = [(p, p.requires_grad) for p in module.parameters()]
    model.to(dev).requires_grad_(False)
    # The content hash names the model in the store, exactly as for a checkpoint file.
    sha = state_hash(name, config, model.state_dict(), getattr(module, "Config", None))
    meta = {"model": name, "data": {"name": dataset}, "sha256": sha, "extra": {"method": name}}
    check_writable_target(opts.out)
    store = ResultsStore(opts.out)
    store.tidy()
    index = eval_subset(len(data.x_test), opts.n_samples)
    try:
        # in eval mode; the caller's module keeps its own training flags, not its device
        with evaluation_mode(model), deterministic_algorithms(True, dev):
            ctx = CheckpointContext(f"<module {name} {sha[:12]}>", model, meta, dev, index,
                                    data.x_test[index].to(dev), data.y_test[index].to(dev), opts.batch_size)
            ctx.clean_pred, ctx.clean_failed, ctx.clean_nfe = predictions(ctx, model)
            ctx.clean = (ctx.clean_pred == ctx.y.cpu()) & ~ctx.clean_failed
            views = parse_grad_solvers(opts.grad_solver) if isinstance(opts.grad_solver, (str, type(None))) \
                else list(opts.grad_solver)
            resolve_views(ctx, views)
            ids = runner.evaluate_checkpoint(ctx, requests, eps, opts.seed, store, opts.force, None,
                                              opts.progress, log_to_stderr)
            if is_lyapunov_model(model):  # as eval does: are its V Lyapunov functions of its flow?
                runner.record_alignment(ctx, opts.seed, store, opts.force, log_to_stderr)
    finally:
        for parameter, flag in grad_flags:
            parameter.requires_grad_(flag)
    by_id = {r.id: r for r in store.all_records()}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


def load_results(path: str | Path, outcomes: bool = False):
    """A results folder as a pandas DataFrame: one row per complete record (its fields as columns,
    `params` and `sanity` as dicts, plus `id`); with `outcomes=True` one row per (record, test
    example) instead, with the record's id, model, method, perturbation, threat, severity,
    grad_solver and seed beside the example's `index`, `clean`, `robust`, `failed` and `nfe`."""
    import pandas as pd

    from .evaluation.store import ResultsStore
    from .reports.store import load_records

    records = load_records(path)
    if not outcomes:
        return pd.DataFrame([{"id": r.id, **asdict(r)} for r in records])
    store = ResultsStore(path)
    keys = ("model", "method", "dataset", "checkpoint", "perturbation", "threat", "severity", "grad_solver", "seed")
    frames = []
    for r in records:
        arrays = store.outcomes(r.id)
        frame = pd.DataFrame({k: v for k, v in arrays.items() if getattr(v, "ndim", 0) == 1})
        frame.insert(0, "id", r.id)
        for position, key in enumerate(keys, start=1):
            frame.insert(position, key, getattr(r, key))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", *keys])
