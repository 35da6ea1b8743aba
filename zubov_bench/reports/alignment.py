"""The Lyapunov alignment table: one row per checkpoint, from the store's alignment.jsonl."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..evaluation.alignment import read_alignment

# column -> (header, how the value is shown)
COLUMNS = {
    "method": ("method", str),
    "train_seed": ("seed", str),
    "clean_acc": ("clean", "{:.1%}".format),
    "stable_equilibria": ("stable e_k", None),  # filled as "s of K"
    "max_real_eigenvalue": ("max Re λ(J(e_k))", "{:+.3f}".format),
    "equilibria_in_own_proa": ("e_k in own PRoA", None),  # filled as "s of K"
    "proa_reach_equilibrium": ("PRoA points reaching e_k", "{:.1%}".format),
    "proa_reach_worst_class": ("worst class", "{:.1%}".format),
    "proa_v_dot_negative": ("PRoA points with V̇ < 0", "{:.1%}".format),
    "data_in_proa_zT": ("correct z(T) in PRoA", "{:.1%}".format),
    "data_in_proa_z0": ("correct z(0) in PRoA", "{:.1%}".format),
    "v_y_falls": ("V_y(z(T)) < V_y(z(0))", "{:.1%}".format),
    "v_y_never_rises": ("V_y never rises on [0, T]", "{:.1%}".format),
    "proa_roa_iou": ("PRoA-RoA IoU", "{:.2f}".format),
}
CAPTION = ("Lyapunov alignment: stable e_k = equilibria whose Jacobian has every eigenvalue in the left "
           "half-plane; PRoA points are sampled inside {V_k < c} and integrated with RK4 over 10·T (default horizon), 'reaching' = ending nearest e_k within a quarter of the closest pair's distance; 'correct' = "
           "clean-correct test points of the evaluated subset; IoU only where d = 2.")


def alignment_frame(entries: list[dict], dataset: str | None = None) -> pd.DataFrame:
    """The stored entries as a DataFrame, one row per entry, sorted by dataset, method and seed."""
    frame = pd.DataFrame(entries)
    if frame.empty:
        return frame
    if dataset:
        frame = frame[frame["dataset"] == dataset]
    return frame.sort_values(["dataset", "method", "train_seed"]).reset_index(drop=True)


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for key, (header, fmt) in COLUMNS.items():
        if fmt is None:  # a count of equilibria
            out[header] = [("—" if pd.isna(s) else f"{int(s)} of {k}") for s, k in
                           zip(frame.get(key, pd.Series([float("nan")] * len(frame), index=frame.index)),
                               frame["equilibria"])]
        elif key in frame:
            out[header] = [("—" if pd.isna(v) else fmt(v)) for v in frame[key]]
    return out


def render_alignment(entries: list[dict], fmt: str = "md", dataset: str | None = None) -> str:
    frame = alignment_frame(entries, dataset)
    if frame.empty:
        return ""
    if fmt == "csv":
        return frame.drop(columns=["config"], errors="ignore").to_csv(index=False)
    parts = []
    for name, group in frame.groupby("dataset", sort=True):
        shown = _shown(group)
        if fmt == "latex":
            parts.append(shown.to_latex(index=False, caption=f"{name}: {CAPTION}"))
        else:
            rows = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
            rows += ["| " + " | ".join(map(str, row)) + " |" for row in shown.itertuples(index=False)]
            parts.append(f"### {name}: Lyapunov alignment\n\n" + "\n".join(rows) + f"\n\n{CAPTION}\n")
    return "\n".join(parts)


def load_alignment(results_dir: str | Path) -> list[dict]:
    return read_alignment(results_dir)
