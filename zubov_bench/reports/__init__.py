"""Tables and figures from the results store, and region-of-attraction diagnostics for d = 2."""
from .plots import plot_results, save_figure, severity_figure, tradeoff_figure
from .render import FORMATS, render, to_csv, to_latex, to_markdown
from .roa import RoAResult, compute_roa, region_iou
from .roa_plot import roa_figure, write_roa_figure
from .store import load_records
from .tables import Column, Table, build_tables

__all__ = [
    "Column", "FORMATS", "RoAResult", "Table", "build_tables", "compute_roa", "load_records",
    "plot_results", "region_iou", "render", "roa_figure", "save_figure", "severity_figure",
    "to_csv", "to_latex", "to_markdown", "tradeoff_figure", "write_roa_figure",
]
