"""Training step under CPU contention: torch's old default thread count against `--threads auto`.

For Zubov-Net (each dataset's preset) and `node` on digits and FashionMNIST, times the optimizer
step idle and while one competing CPU-bound process (a Python busy loop this script spawns, niced
by 5 like a background job) runs, for torch's default thread count (one per core) and for the count
`--threads auto` picks (zubov_bench.device.auto_threads). Blocks alternate idle / contended so a
change of the machine's other load hits both. Prints the contended / idle ratios (target <= 2x).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from common import Report, median_seconds, ms, table
from train_step import batch_of, make_step
from zubov_bench.device import auto_threads
from zubov_bench.models import create_model
from zubov_bench.presets import resolve_preset

TARGET = 2.0
BUSY_LOOP = "while True: pass"


class Competitor:
    """One CPU-bound process, niced by 5, for the duration of a `with` block."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], preexec_fn=lambda: os.nice(5))
        time.sleep(0.5)  # let the scheduler see it
        return self

    def __exit__(self, *exc):
        self.process.kill()  # this script's own child, by its pid
        self.process.wait()


def run(report: Report, device, quick: bool = False) -> None:
    if device.type != "cpu":
        report.section("Training step under CPU contention", ["Skipped: a CPU benchmark (run with --device cpu)."])
        return
    repeats, blocks = (3, 1) if quick else (5, 2)
    default_threads = os.cpu_count() or 1  # torch's default without OMP_NUM_THREADS
    # what `--threads auto` picks on this machine while the competitor runs (its one-minute load
    # average lags, so it is asked inside the contended block and once idle)
    previous = torch.get_num_threads()
    idle_auto = auto_threads()
    with Competitor():
        busy_auto = auto_threads()
    settings = {f"torch default ({default_threads})": default_threads}
    settings.setdefault(f"auto ({busy_auto})", busy_auto)
    load = os.getloadavg()[0]
    rows = []
    try:
        for dataset, batch in (("digits", 64), ("fashion-mnist", 128)):
            spec, x, y, source = batch_of(dataset, batch, device)
            torch.manual_seed(0)
            models = {"node": create_model("node", spec),
                      "zubov": create_model("zubov", spec, **resolve_preset("zubov", dataset)["model"])}
            for model_name, model in models.items():
                step = make_step(model, x, y)
                for label, threads in settings.items():
                    torch.set_num_threads(threads)
                    idle, busy = [], []
                    for _ in range(blocks):
                        idle.append(median_seconds({"s": step}, repeats, warmup=1)["s"])
                        with Competitor():
                            busy.append(median_seconds({"s": step}, repeats, warmup=1)["s"])
                    t_idle, t_busy = sorted(idle)[len(idle) // 2], sorted(busy)[len(busy) // 2]
                    ratio = t_busy / t_idle
                    verdict = report.ratio(f"train step under contention, {dataset}, {model_name}, "
                                           f"{label.split(' (')[0]} threads", ratio,
                                           TARGET if model_name == "zubov" else None)
                    rows.append([dataset, model_name, label, ms(t_idle), ms(t_busy), verdict])
                    print(" | ".join(str(c) for c in rows[-1]), flush=True)
    finally:
        torch.set_num_threads(previous)
    lines = [f"Optimizer steps (loss, backward, Adam) of each model with its dataset preset's model config "
             f"(digits batch 64, fashion-mnist batch 128, {source} data); median of {repeats} steps per block, "
             f"{blocks} idle and {blocks} contended block(s), alternating. The competitor is one `python -c "
             f"'{BUSY_LOOP}'` at nice +5. `--threads auto` picks {idle_auto} thread(s) idle and {busy_auto} "
             f"with the competitor running on this {default_threads}-core machine. One-minute load average "
             f"at the end: {load:.2f} (other users' jobs included).", ""]
    lines += table(["dataset", "model", "threads", "idle ms", "contended ms", "contended / idle"], rows)
    report.section("Training step under CPU contention", lines)
