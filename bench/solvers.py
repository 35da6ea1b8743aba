"""Solvers: time and NFE of rk4, euler and dopri5 on a trained model; peak memory of a training
step with and without the adjoint, against the number of solver steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common import Report, median_seconds, ms, table
from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.data import load_dataset
from zubov_bench.models import create_model

SOLVERS = {"rk4, 10 steps (deployed)": {"solver": "rk4", "steps": 10},
           "euler, 10 steps": {"solver": "euler", "steps": 10},
           "euler, 40 steps": {"solver": "euler", "steps": 40},
           "dopri5, rtol 1e-3, atol 1e-4": {"solver": "dopri5", "rtol": 1e-3, "atol": 1e-4},
           "dopri5, rtol 1e-5, atol 1e-6": {"solver": "dopri5", "rtol": 1e-5, "atol": 1e-6}}
BASE = "rk4, 10 steps (deployed)"


def with_solver(path: str, overrides: dict):
    """The trained weights under another solver (the solver is config, not weights)."""
    trained, meta = load_checkpoint(path)
    model = create_model(meta["model"], trained.spec, **{**meta["config"], **overrides})
    model.load_state_dict(trained.state_dict())
    return model.eval()


def solver_times(report: Report, checkpoints: dict[str, str], repeats: int) -> None:
    data = load_dataset("digits")
    x, y = data.x_test[:256], data.y_test[:256]
    rows = []
    for name, path in checkpoints.items():
        models = {label: with_solver(path, cfg) for label, cfg in SOLVERS.items()}
        base = models[BASE]

        def fwd_bwd(m):
            def run():
                xi = x.clone().requires_grad_(True)
                F.cross_entropy(m(xi), y).backward()
            return run
        t = median_seconds({k: fwd_bwd(m) for k, m in models.items()}, repeats)
        with torch.no_grad():
            ref = base(x).argmax(1)
            for key, m in models.items():
                m.reset_nfe()
                pred = m(x).argmax(1)
                rows.append([name, key, m.nfe, ms(t[key]), f"{t[key] / t[BASE]:.2f}x",
                             f"{float((pred == ref).float().mean()):.1%}"])
    lines = ["Forward + input-gradient backward on 256 digits test images (what one attack step costs), "
             "trained weights, CPU. NFE counts vector-field evaluations in the forward; agreement is "
             "with the deployed rk4 predictions.", ""]
    lines += table(["model", "solver", "NFE", "ms", "vs rk4", "agreement with rk4"], rows)
    report.section("Solvers", lines)


def saved_for_backward_mib(model, x, y) -> float:
    """MiB of tensors autograd keeps for the backward of one training loss (storages counted once)."""
    seen: dict[int, int] = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except RuntimeError:  # a functorch-wrapped tensor (inside the JVP) has no plain storage
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = model.training_loss(x, y)
    loss.backward()
    return sum(seen.values()) / 2**20


def memory(report: Report, quick: bool) -> None:
    steps_grid = (10, 40) if quick else (10, 20, 40, 80)
    data = load_dataset("digits")
    batch = 256
    x, y = data.x_train[:batch], data.y_train[:batch]
    rows = []
    for model in ("node", "zubov"):
        for adjoint in (False, True):
            cells = []
            for steps in steps_grid:
                torch.manual_seed(0)
                m = create_model(model, data.spec, steps=steps, adjoint=adjoint)
                cells.append(f"{saved_for_backward_mib(m, x, y):.1f}")
            rows.append([model, "adjoint" if adjoint else "backprop through the solver", *cells])
    lines = [f"Memory autograd holds for the backward of one training loss (MiB; every saved tensor's "
             f"storage counted once), {batch} digits images, rk4, CPU. This is the part of the peak "
             "that grows with the solver steps: backprop through the solver keeps every stage, the "
             "adjoint keeps only what it needs to re-solve backwards. Zubov-Net's losses also "
             "evaluate V on trajectory states, boundary points and their JVPs, which the adjoint does "
             "not remove.", ""]
    lines += table(["model", "gradient", *[f"{s} steps" for s in steps_grid]], rows)
    report.section("Memory", lines)


def run(report: Report, checkpoints: dict[str, str], quick: bool = False) -> None:
    solver_times(report, checkpoints, repeats=3 if quick else 5)
    memory(report, quick)
