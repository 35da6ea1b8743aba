"""The report phase of `reproduce`: tables and figures from the results store, RoA figures."""
from __future__ import annotations

from pathlib import Path

from ..evaluation import ResultsStore
from ..evaluation.worst_case import ATTACK_THREATS
from ..io import write_text
from ..reports import build_tables, load_records, plot_results, render, write_roa_figure
from ..reports.alignment import load_alignment, render_alignment
from ..reports.groups import build_group_tables, groups_present
from ..reports.plots import attack_severities

TABLES = "tables"
FIGURES = "figures"
TABLE_FORMATS = (("md", "md"), ("latex", "tex"), ("csv", "csv"))
TABLE_STEMS = {False: "results", True: "worst-case"}


def write_tables(out: Path) -> list[Path]:
    """results.{md,tex,csv} (every perturbation), worst-case.{md,tex,csv} (per threat and ε), per
    perturbation group GROUP.{md,tex,csv} (corruptions.md: each corruption) and, for models with
    Lyapunov functions, alignment.{md,tex,csv}."""
    records = load_records(out)
    written = []
    attacked = any(r.threat in ATTACK_THREATS for r in records)
    for worst_case, stem in TABLE_STEMS.items():
        if worst_case and not attacked:  # only noises or corruptions: no worst case to tabulate
            continue
        tables = build_tables(records, None, (), worst_case, outcomes=ResultsStore(out).outcomes)
        for fmt, ext in TABLE_FORMATS:
            path = out / TABLES / f"{stem}.{ext}"
            write_text(path, render(tables, fmt))
            written.append(path)
    for group in groups_present(records):  # e.g. tables/corruptions.md: one column per corruption
        tables = build_group_tables(records, group)
        for fmt, ext in TABLE_FORMATS:
            path = out / TABLES / f"{group}.{ext}"
            write_text(path, render(tables, fmt))
            written.append(path)
    entries = load_alignment(out)
    for fmt, ext in TABLE_FORMATS if entries else ():
        path = out / TABLES / f"alignment.{ext}"
        write_text(path, render_alignment(entries, fmt))
        written.append(path)
    return written


def write_figures(out: Path, threat: str, eps: float | None) -> list[Path]:
    """Severity and trade-off figures per dataset; the trade-off ε falls back to the grid's middle.
    A store without attacks of `threat` gets the severity figures only."""
    from ..reports.aggregate import ordered
    from ..reports.plots import save_figure, severity_figure

    records = load_records(out)
    outcomes = ResultsStore(out).outcomes
    grid = attack_severities(records, threat)
    if not grid:  # only noises or corruptions: no trade-off at an attack ε, the severity figures still
        return [path for ds in ordered(r.dataset for r in records)
                for path in save_figure(severity_figure([r for r in records if r.dataset == ds], ds, outcomes),
                                        out / FIGURES, f"severity-{ds}")]
    chosen = eps if eps is not None and any(abs(s - eps) < 1e-9 for s in grid) else None
    return plot_results(records, out / FIGURES, chosen, threat, outcomes=outcomes)


def roa_files(out: Path, run_name: str) -> list[Path]:
    return [out / FIGURES / f"roa-{run_name}.{ext}" for ext in ("png", "pdf", "json")]


def write_roa(out: Path, checkpoint: Path, roa, data_root=None, download=False):
    """roa-<run>.{png,pdf,json}; returns (paths, RoAResult)."""
    return write_roa_figure(checkpoint, out / FIGURES, int(roa.resolution), float(roa.horizon), int(roa.steps),
                            data_root, download)
