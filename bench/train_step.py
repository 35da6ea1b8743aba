"""Training step: Zubov-Net against `node` with the same stem, width and solver, and its split."""
from __future__ import annotations

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from common import Report, median_seconds, ms, sync, table
from zubov_bench.data import DataSpec, load_dataset
from zubov_bench.errors import UserError
from zubov_bench.models import create_model
from zubov_bench.presets import resolve_preset

PHASES = ("features", "ode", "lyapunov", "consistency_jvp", "boundary_sampling")  # labels in the models
TARGET = 1.5

# Zubov-Net settings compared with node. "spec" is docs/zubov-net.md's default (M = 32 rays, every
# step, width 128); "lean" is the fashion-mnist preset's model config: once the spec mechanism's
# lightest settings (8 rays per class per step, consistency on z0 and z(T), half the Lyapunov width,
# no separation loss), now the aligned mechanism with the sampler kept that light.
# "aligned" is the digits preset's model config (presets.ZUBOV_ALIGNED, docs/zubov-net.md §3): the
# hinge residual, interior PRoA points and their flow, the anchored field and its Jacobian hinge
# (the preset's PGD adversarial training is a training-loop setting, not part of this step).
RECIPES = {"spec": {}, "lean": resolve_preset("zubov", "fashion-mnist")["model"],
           "aligned": resolve_preset("zubov", "digits")["model"]}


def batch_of(dataset: str, size: int, device) -> tuple[DataSpec, torch.Tensor, torch.Tensor, str]:
    try:
        data = load_dataset(dataset)
        return data.spec, data.x_train[:size].to(device), data.y_train[:size].to(device), "real"
    except UserError:  # not on this machine and offline: shapes are all a step's cost depends on
        data = load_dataset("digits")
        spec = DataSpec(name=dataset, input_shape=(1, 28, 28), num_classes=10, mean=(0.286,),
                        std=(0.353,), eps_linf=data.spec.eps_linf, eps_l2=data.spec.eps_l2)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(size, 1, 28, 28, generator=gen).to(device)
        return spec, x, torch.randint(0, 10, (size,), generator=gen).to(device), "synthetic"


def make_step(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss, _ = model.training_loss(x, y)
        loss.backward()
        opt.step()
    return step


def forward_backward(model, x, y, repeats: int) -> tuple[float, float]:
    """Median seconds of the loss (forward) and of its backward pass."""
    fwd, bwd = [], []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        loss, _ = model.training_loss(x, y)
        sync()
        mid = time.perf_counter()
        loss.backward()
        sync()
        fwd.append(mid - start)
        bwd.append(time.perf_counter() - mid)
        model.zero_grad(set_to_none=True)
    return statistics.median(fwd), statistics.median(bwd)


def phase_shares(model, x, y, rounds: int = 3) -> dict[str, float]:
    """Share of the forward spent in each labelled phase, from the profiler's CPU totals."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            with record_function("bench.forward"):
                model.training_loss(x, y)
    totals = {e.key: e.cpu_time_total for e in prof.key_averages()}
    whole = totals.get("bench.forward", 0.0) or 1.0
    return {p: totals.get(p, 0.0) / whole for p in PHASES}


def split_row(name: str, model, x, y, repeats: int) -> list[object]:
    fwd, bwd = forward_backward(model, x, y, repeats)
    shares = phase_shares(model, x, y)
    parts = [fwd * shares[p] for p in PHASES]
    return [name, ms(fwd + bwd), ms(fwd), *[ms(p) for p in parts], ms(fwd - sum(parts)), ms(bwd)]


def run(report: Report, device, quick: bool = False) -> None:
    repeats = 5 if quick else 15
    for dataset, batch in (("digits", 64), ("fashion-mnist", 128)):
        spec, x, y, source = batch_of(dataset, batch, device)
        torch.manual_seed(0)
        node = create_model("node", spec).to(device)
        zubovs = {name: create_model("zubov", spec, **cfg).to(device) for name, cfg in RECIPES.items()}
        steps = {"node": make_step(node, x, y)}
        steps.update({f"zubov ({name})": make_step(m, x, y) for name, m in zubovs.items()})
        times = median_seconds(steps, repeats, warmup=2)
        lines = [f"{dataset} ({source} data), batch {batch}, d = {node.cfg.d}, stem {node.cfg.stem}, "
                 f"{node.cfg.solver} with {node.cfg.steps} steps; median of {repeats} interleaved "
                 "optimizer steps (loss, backward, Adam).", ""]
        rows = [[name, ms(t), f"{t / times['node']:.2f}x"] for name, t in times.items()]
        lines += table(["model", "ms per step", "vs node"], rows)
        for name in RECIPES:
            ratio = times[f"zubov ({name})"] / times["node"]
            lines.append(f"\nZubov-Net ({name}, {RECIPES[name] or 'spec defaults'}) / node: "
                         + report.ratio(f"train step, {dataset}, zubov {name} / node", ratio, TARGET))
        lines += ["", "Split of one step (ms; the phases share the forward by profiler CPU time):", ""]
        split = [split_row("node", node, x, y, repeats)]
        split += [split_row(f"zubov ({n})", m, x, y, repeats) for n, m in zubovs.items()]
        lines += table(["model", "step", "forward", *PHASES, "other forward", "backward"], split)
        report.section(f"Training step: {dataset}", lines)
