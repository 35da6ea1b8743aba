"""Figures from records (PNG and PDF): accuracy against severity, and the clean/robust trade-off.

Figures are built on `matplotlib.figure.Figure` (Agg), never through pyplot's global state.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure

from ..errors import UserError
from ..io import atomic_path
from ..records import Record
from .aggregate import CLEAN, WORST_CASE, Cell, column_order, filter_records, ordered, summarize
from .certified import certified_title, is_certified
from .labels import THREATS, series_label, severity_label, severity_symbol
from .paper import split_paper_records
from .seed_coverage import EVERY_SEED, EVERY_SEED_NAME, narrow_worst_cases

FIGURE_FORMATS = ("png", "pdf")
# A PDF stamps its creation time by default, so a regenerated store would differ from the committed
# one in every PDF; without it the same records give the same bytes (`zubov-bench diff`).
REPRODUCIBLE_METADATA = {"pdf": {"CreationDate": None}}


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    paths = []
    for ext in FIGURE_FORMATS:
        path = Path(out_dir) / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=REPRODUCIBLE_METADATA.get(ext))
        paths.append(path)
    return paths


def _mean_std(values) -> tuple[float, float]:
    values = list(values)
    return 100 * statistics.fmean(values), (100 * statistics.stdev(values) if len(values) > 1 else 0.0)


def _panel_grid(n: int, width: float = 3.4, height: float = 2.9):
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    for ax in list(axes)[n:]:
        ax.set_visible(False)
    return fig, list(fig.axes)[:n]


MARKERS = ("o", "s", "^", "D", "v", "P")


def method_style(i: int) -> dict:
    """Colour and marker of the i-th method: ten colours, then the same colours with the next marker,
    so that no two of up to 60 methods look alike."""
    return {"color": f"C{i % 10}", "marker": MARKERS[(i // 10) % len(MARKERS)]}


def figure_cells(records: list[Record], outcomes=None) -> tuple[list[Record], dict, list[tuple]]:
    """(strict records, cells, column keys) as the tables count them: paper-protocol records left out
    (they have their own table columns), a worst case whose attacks ran on only some training seeds
    kept strict (the checkpoints that ran every attack) and, where `outcomes` can read the
    per-example arrays, its every-seed worst case as a series of its own (reports/seed_coverage.py)."""
    records, _ = split_paper_records(records)
    cells = summarize(records)
    keys = column_order(records)
    for entry in narrow_worst_cases(cells, records, outcomes):
        cells.update(entry.every_seed)
        if entry.every_seed and entry.every_seed_key not in keys:
            keys.append(entry.every_seed_key)
    return records, cells, keys


def _series_title(pert: str, threat: str) -> str:
    if is_certified(threat):
        return certified_title(pert)
    if pert == EVERY_SEED:
        return f"{EVERY_SEED_NAME} {THREATS.get(threat, threat)}"
    return series_label(pert, threat)


def severity_figure(records: list[Record], dataset: str, outcomes=None) -> Figure:
    """One panel per perturbation: accuracy against severity (clean at 0), one line per method. The
    worst case is strict: where an attack ran on only some training seeds, the checkpoints that ran
    every attack, and a second panel has the every-seed worst case (weaker, all seeds)."""
    records, cells, keys = figure_cells(records, outcomes)
    methods = ordered(r.method for r in records)
    series = ordered(k[:2] for k in keys)
    fig, axes = _panel_grid(len(series))
    for ax, (pert, threat) in zip(axes, series):
        for i, method in enumerate(methods):
            _plot_series(ax, cells, method, [k for k in keys if k[:2] == (pert, threat)], method_style(i),
                         with_clean=not is_certified(threat))  # a certified series has its own radius 0
        ax.set_title(_series_title(pert, threat), fontsize=10)
        ax.set_xlabel(f"radius ({THREATS['l2']})" if is_certified(threat) else _parameter_name(pert, threat))
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(methods), 6), frameon=False)
    fig.suptitle(f"Accuracy against severity on {dataset} (× = a sanity check failed)")
    return fig


def _plot_series(ax, cells: dict, method: str, keys: list[tuple], style: dict, with_clean: bool = True) -> None:
    points: list[tuple[float, Cell]] = ([(0.0, cells[(method, CLEAN)])] if with_clean and (method, CLEAN) in cells
                                        else [])
    points += [(k[2], cells[(method, k)]) for k in keys if (method, k) in cells]
    if len(points) <= 1:
        return
    stats = [_mean_std(c.values.values()) for _, c in points]
    xs = [x for x, _ in points]
    ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], ms=3, capsize=2, label=method, **style)
    failed = [(x, m) for (x, c), (m, _) in zip(points, stats) if c.failed]
    if failed:
        ax.scatter(*zip(*failed), marker="x", s=40, color="black", zorder=3)


def _parameter_name(pert: str, threat: str) -> str:
    if threat in THREATS:
        return f"ε ({THREATS[threat]})"
    return severity_symbol(pert) or "severity"


def robust_values(cells: dict, method: str, threat: str, eps: float) -> tuple[dict, bool]:
    """Per-checkpoint robust accuracy at (threat, eps): the worst-case union if recorded,
    else the lowest single attack. Returns (sha -> value, came from the worst-case union)."""
    union = cells.get((method, (WORST_CASE, threat, eps)))
    if union is not None:
        return union.values, True
    attacks = [c for (m, k), c in cells.items() if m == method and k[1:] == (threat, eps)]
    shas = {sha for c in attacks for sha in c.values}
    return {sha: min(c.values[sha] for c in attacks if sha in c.values) for sha in shas}, False


def attack_severities(records: list[Record], threat: str) -> list[float]:
    return sorted({k[2] for k in column_order(records) if k[1] == threat})


def pick_eps(records: list[Record], threat: str, eps: float | None) -> float:
    grid = attack_severities(records, threat)
    if not grid:
        raise UserError(f"no {threat} attack records to plot the trade-off")
    if eps is None:
        return grid[len(grid) // 2]
    match = [s for s in grid if math.isclose(s, eps, rel_tol=1e-6, abs_tol=1e-9)]
    if not match:
        raise UserError(f"no {threat} records at eps={eps:g}; available: "
                        + ", ".join(f"{s:g}" for s in grid))
    return match[0]


def tradeoff_figure(records: list[Record], dataset: str, eps: float, threat: str = "linf", outcomes=None) -> Figure:
    """Clean accuracy against robust accuracy at one epsilon, one point per method (± std). Both
    coordinates come from the same checkpoints: with a strict worst case that only some training
    seeds have (an attack ran on those alone), the clean accuracy of those seeds."""
    records, cells, _ = figure_cells(records, outcomes)
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.subplots()
    sources = set()
    for i, method in enumerate(ordered(r.method for r in records)):
        robust, from_union = robust_values(cells, method, threat, eps)
        if not robust or (method, CLEAN) not in cells:
            continue
        sources.add(from_union)
        clean = cells[(method, CLEAN)].values
        (cx, cs), (ry, rs) = _mean_std(clean[sha] for sha in robust if sha in clean), _mean_std(robust.values())
        ax.errorbar([cx], [ry], xerr=[cs], yerr=[rs], capsize=3, label=method, **method_style(i))
        ax.annotate(method, (cx, ry), textcoords="offset points", xytext=(5, 4), fontsize=8)
    what = {frozenset({True}): "worst case over attacks", frozenset({False}): "strongest single attack"}
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy (%), {THREATS.get(threat, threat)} ε = {severity_label(eps, threat)}")
    ax.set_title(f"{dataset}: {what.get(frozenset(sources), 'worst case where recorded, else strongest attack')}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 6:  # beside the axes, where it hides no point
        fig.set_size_inches(7.5, 4.2)
        fig.legend(fontsize=8, frameon=False, loc="outside right upper")
    else:
        ax.legend(fontsize=8, frameon=False)
    return fig


def plot_results(records: list[Record], out_dir: str | Path, eps: float | None = None,
                 threat: str = "linf", dataset: str | None = None, outcomes=None) -> list[Path]:
    """Write severity-<dataset> and tradeoff-<dataset> figures (PNG and PDF) for every dataset.
    `outcomes(record_id)` (the store's per-example arrays) adds the every-seed worst case where an
    attack ran on only some training seeds."""
    records = filter_records(records, dataset)
    if not records:
        raise UserError(f"no records for dataset {dataset!r}" if dataset else "no records to plot")
    written = []
    for ds in ordered(r.dataset for r in records):
        subset = [r for r in records if r.dataset == ds]
        chosen = pick_eps(subset, threat, eps)
        written += save_figure(severity_figure(subset, ds, outcomes), out_dir, f"severity-{ds}")
        written += save_figure(tradeoff_figure(subset, ds, chosen, threat, outcomes), out_dir, f"tradeoff-{ds}")
    return written
