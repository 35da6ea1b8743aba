"""The example figure of a perturbation group: one test image under every member and severity.

Rows are the members (the 15 corruptions), columns the clean image and severities 1..5; the
corrupted images are exactly those `eval` scores, since each member is called with the
evaluation seed and the image's dataset index.
"""
from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..errors import UserError
from ..io import atomic_path

CELL_INCHES = 0.85


def group_examples(group: str, x: torch.Tensor, index: int, seed: int) -> list[tuple[str, list[float], torch.Tensor]]:
    """(member label, severities, (S, C, H, W) corrupted images) per member of `group`, for one
    image `x` of shape (C, H, W) with dataset index `index`."""
    from ..perturbations import PERTURBATIONS
    from ..perturbations.registry import group_members
    from .labels import perturbation_name

    members = group_members(group)
    if not members:
        raise UserError(f"no perturbation group {group!r}")
    out = []
    for name in members:
        perturbation = PERTURBATIONS.get(name)()
        severities = list(perturbation.noise_grid)
        images = torch.cat([perturbation(None, x[None], None, s, torch.Generator().manual_seed(seed),
                                         torch.tensor([index])) for s in severities])
        out.append((perturbation_name(name), severities, images))
    return out


def examples_figure(examples, clean: torch.Tensor, title: str) -> Figure:
    n_rows = len(examples)
    n_cols = 1 + max(len(sev) for _, sev, _ in examples)
    height = CELL_INCHES * n_rows + 0.6
    fig = Figure(figsize=(CELL_INCHES * n_cols + 1.2, height))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for row, (label, severities, images) in enumerate(examples):
        for col, image in enumerate([clean] + list(images)):
            ax = axes[row][col]
            _show(ax, image)
            if row == 0:
                ax.set_title("clean" if col == 0 else f"severity {severities[col - 1]:g}", fontsize=8)
        axes[row][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        for col in range(1 + len(severities), n_cols):
            axes[row][col].axis("off")
    fig.suptitle(title, fontsize=9, y=1 - 0.1 / height)
    fig.subplots_adjust(wspace=0.05, hspace=0.08, top=1 - 0.55 / height)
    return fig


def _show(ax, image: torch.Tensor) -> None:
    data = image.detach().cpu().float().clamp(0, 1)
    if data.shape[0] == 1:
        ax.imshow(data[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(data.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def write_group_examples(group: str, dataset: str, out_dir: str | Path, example: int = 0, seed: int = 0,
                         data_root=None, download: bool = False) -> Path:
    """OUT/<group>-<dataset>.png: test image `example` of `dataset` under every member and severity."""
    from ..data import load_dataset

    bundle = load_dataset(dataset, data_root, download)
    if not bundle.spec.is_image:
        raise UserError(f"{dataset} is not an image dataset: the {group} apply to images only")
    if not 0 <= example < len(bundle.x_test):
        raise UserError(f"--example {example} is outside the {len(bundle.x_test)} test images of {dataset}")
    clean = bundle.x_test[example]
    examples = group_examples(group, clean, example, seed)
    fig = examples_figure(examples, clean, f"{dataset}, test image {example}, evaluation seed {seed}")
    path = Path(out_dir) / f"{group}-{dataset}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path
