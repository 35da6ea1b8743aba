"""What every benchmark shares: interleaved timing, the machine's description, shared fixtures."""
from __future__ import annotations

import datetime
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from zubov_bench.provenance import cpu_kind, git_state

ROOT = Path(__file__).resolve().parent.parent


def sync() -> None:
    """Wait for queued GPU work, so that a host clock times the work and not its launch."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each callable. Rounds alternate their order, so a change in the
    machine's load during the run hits every contender alike instead of biasing a ratio."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            times[name].append(timed(fns[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def git_commit() -> str:
    if os.environ.get("BENCH_COMMIT"):  # a copy of the tree without .git (a lent GPU machine)
        return os.environ["BENCH_COMMIT"]
    # the report itself (RESULTS.md, logs/) is output, not code: rewriting it leaves the tree clean
    commit, dirty = git_state(ROOT, outputs=("bench/RESULTS.md", "bench/logs"))
    return "unknown" if commit is None else commit[:7] + ("+uncommitted" if dirty else "")


def machine(device: torch.device) -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_kind(),
        "device_type": device.type,
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "commit": git_commit(), "load_at_start": round(load, 2),
    }


@dataclass
class Report:
    """Markdown sections plus the ratios that have a target, printed as they arrive."""

    sections: list[str] = field(default_factory=list)
    ratios: list[tuple[str, float, float | None]] = field(default_factory=list)

    def section(self, title: str, lines: list[str]) -> None:
        text = "\n".join([f"### {title}", "", *lines, ""])
        self.sections.append(text)
        print(text, flush=True)

    def ratio(self, name: str, value: float, target: float | None = None) -> str:
        self.ratios.append((name, value, target))
        return f"{value:.2f}x" + ("" if target is None else f" (target <= {target:.2f}x: "
                                 f"{'met' if value <= target else 'NOT met'})")

    def summary(self) -> list[str]:
        lines = ["| ratio | measured | target | |", "|---|---|---|---|"]
        for name, value, target in self.ratios:
            verdict = "" if target is None else ("met" if value <= target else "**not met**")
            lines.append(f"| {name} | {value:.2f}x | {'' if target is None else f'<= {target:.2f}x'} "
                         f"| {verdict} |")
        return lines


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"
