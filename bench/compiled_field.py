"""`train --compile`: a training step with the vector field under torch.compile, against eager."""
from __future__ import annotations

import torch

from common import Report, median_seconds, ms, table, timed
from train_step import batch_of, make_step
from zubov_bench.models import create_model
from zubov_bench.models.ode import compile_field


def run(report: Report, device, quick: bool = False) -> None:
    spec, x, y, source = batch_of("fashion-mnist", 128, device)
    rows = []
    for name in ("node", "zubov"):
        torch.manual_seed(0)
        eager, compiled = create_model(name, spec).to(device), create_model(name, spec).to(device)
        compile_field(compiled)
        steps = {"eager": make_step(eager, x, y), "compiled": make_step(compiled, x, y)}
        first = timed(steps["compiled"])  # the first call compiles
        t = median_seconds(steps, 5 if quick else 10, warmup=2)
        rows.append([name, f"{first:.1f}", ms(t["eager"]), ms(t["compiled"]),
                     report.ratio(f"train step with --compile, {name} (compiled / eager)",
                                  t["compiled"] / t["eager"])])
    lines = [f"fashion-mnist ({source} data), batch 128, optimizer steps; the first compiled step "
             "includes compilation (a warm inductor cache makes it shorter).", ""]
    lines += table(["model", "first compiled step s", "eager ms", "compiled ms", "compiled / eager"], rows)
    report.section("torch.compile of the vector field", lines)
