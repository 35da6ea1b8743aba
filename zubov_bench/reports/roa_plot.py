"""The toy2d figure: learned vector field, PRoA level sets {V_k = c}, and true regions of attraction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..errors import UserError
from ..evaluation.roa import RoAResult, check_roa_model, compute_roa, default_extent, grid_states
from ..io import write_json
from .plots import save_figure


@torch.no_grad()
def field_on_grid(model, extent, resolution: int = 40):
    xs, ys, states = grid_states(extent, resolution)
    f = model.vector_field(states.to(model.equilibria)).reshape(len(ys), len(xs), 2).cpu().numpy()
    return xs, ys, f[..., 0], f[..., 1]


def roa_figure(model, result: RoAResult, name: str, features: torch.Tensor | None = None,
               labels: torch.Tensor | None = None) -> Figure:
    k = len(result.iou)
    colors = [f"C{i % 10}" for i in range(k)]
    fig = Figure(figsize=(6.4, 5.8), layout="constrained")
    ax = fig.subplots()
    basins = ListedColormap([to_rgba("0.85")] + [to_rgba(c, 0.28) for c in colors])
    ax.imshow(result.roa + 1, extent=result.extent, origin="lower", cmap=basins, vmin=-0.5, vmax=k + 0.5,
              interpolation="nearest", aspect="auto")
    for i, color in enumerate(colors):
        if result.lyapunov[i].min() < result.level:
            ax.contour(result.xs, result.ys, result.lyapunov[i], levels=[result.level], colors=[color],
                       linewidths=2.0)
    xs, ys, u, v = field_on_grid(model, result.extent)
    ax.streamplot(xs, ys, u, v, color="0.3", density=1.1, linewidth=0.6, arrowsize=0.7)
    if features is not None:
        ax.scatter(features[:, 0], features[:, 1], s=3, alpha=0.35,
                   c=[colors[int(y)] for y in labels] if labels is not None else "0.2", linewidths=0)
    eq = model.equilibria.detach().cpu().numpy()
    ax.scatter(eq[:, 0], eq[:, 1], marker="*", s=160, c=colors, edgecolors="black", zorder=5)
    ax.set_xlim(result.extent[:2])
    ax.set_ylim(result.extent[2:])
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.legend(handles=_legend_handles(colors), fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_title(_title(name, result), fontsize=9)
    return fig


def _legend_handles(colors):
    handles = [Line2D([], [], color=c, lw=2, label=f"PRoA {i}: V_{i} = c") for i, c in enumerate(colors)]
    handles += [Patch(color=to_rgba(c, 0.28), label=f"RoA {i} (flow reaches e_{i})") for i, c in enumerate(colors)]
    return handles + [Patch(color="0.85", label="reaches no e_k")]


def _title(name: str, result: RoAResult) -> str:
    per_class = ", ".join("–" if np.isnan(v) else f"{v:.2f}" for v in result.iou)
    inside = ", ".join("–" if np.isnan(v) else f"{v:.2f}" for v in result.proa_in_roa)
    return (f"{name}: PRoA–RoA IoU per class [{per_class}], mean {result.mean_iou:.2f}\n"
            f"share of PRoA reaching its e_k [{inside}]; RK4, T = {result.horizon:g}")


def run_name(checkpoint: Path, meta: dict) -> str:
    """The run folder's name for `DIR/model.pt`, else the file's stem."""
    return checkpoint.parent.name if checkpoint.name == "model.pt" and checkpoint.parent.name else checkpoint.stem


@torch.no_grad()
def _data_features(model, dataset: str, data_root, download: bool):
    from ..data import load_dataset

    try:
        bundle = load_dataset(dataset, root=data_root, download=download)
    except UserError:
        return None, None
    x = torch.cat([bundle.x_train, bundle.x_test])
    return model.features(x), torch.cat([bundle.y_train, bundle.y_test])


def write_roa_figure(checkpoint: str | Path, out_dir: str | Path, resolution: int = 200,
                     horizon: float = 20.0, steps: int = 400, data_root=None, download: bool = False):
    """Load a checkpoint, compute its RoAs and write roa-<run>.png/.pdf/.json; returns (paths, result)."""
    from ..checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    model, meta = load_checkpoint(checkpoint)
    check_roa_model(model)
    dataset = meta.get("data", {}).get("name", "")
    features, labels = _data_features(model, dataset, data_root, download)
    extent = default_extent(model.equilibria if features is None else features, model.equilibria)
    result = compute_roa(model, extent, resolution, horizon, steps)
    name = run_name(checkpoint, meta)
    stem = f"roa-{name}"
    paths = save_figure(roa_figure(model, result, f"{meta['model']} on {dataset} ({name})", features, labels),
                        out_dir, stem)
    info = {"checkpoint": str(checkpoint), "model": meta["model"], "dataset": dataset, **result.summary()}
    write_json(Path(out_dir) / f"{stem}.json", info)
    return paths + [Path(out_dir) / f"{stem}.json"], result
