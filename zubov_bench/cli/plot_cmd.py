"""`zubov-bench plot`: figures from the results store, or region-of-attraction figures (d = 2)."""
from __future__ import annotations

import click

from ..errors import UserError
from .options import DATA_ROOT, DOWNLOAD


@click.command("plot")
@click.option("--results", "results_dir", default="results/eval", show_default=True,
              type=click.Path(file_okay=False), help="Results folder (holds records.jsonl).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Figure folder.")
@click.option("--eps", type=float, help="Epsilon of the trade-off plot (default: middle of the grid).")
@click.option("--threat", type=click.Choice(["linf", "l2"]), default="linf", show_default=True,
              help="Threat of the trade-off plot.")
@click.option("--dataset", help="Only this dataset.")
@click.option("--roa", is_flag=True, help="Region-of-attraction figure for --checkpoint (d = 2 models).")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False),
              help="With --roa: a checkpoint (repeatable; one figure each).")
@click.option("--resolution", type=click.IntRange(10, 2000), default=200, show_default=True,
              help="With --roa: grid points per axis.")
@click.option("--horizon", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="With --roa: integration time T.")
@click.option("--steps", type=click.IntRange(1), default=400, show_default=True,
              help="With --roa: RK4 steps on [0, T].")
@click.option("--group", metavar="NAME",
              help="Example figure of a perturbation group instead, e.g. --group corruptions --dataset "
                   "fashion-mnist: one test image under every member and severity (OUT/NAME-DATASET.png).")
@click.option("--example", type=click.IntRange(0), default=0, show_default=True,
              help="With --group: the test image's dataset index.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --group: the evaluation seed (the images are those `eval --seed` scores).")
@DATA_ROOT
@DOWNLOAD
def command(results_dir, out_dir, eps, threat, dataset, roa, checkpoints, resolution, horizon, steps,
            group, example, seed, data_root, download):
    """Accuracy against severity and the clean/robust trade-off (PNG and PDF); or, with --roa, the
    learned vector field, PRoA level sets and true regions of attraction with their IoU."""
    from ..io import ensure_writable_dir

    ensure_writable_dir(out_dir)
    if group:
        from ..reports.corruption_grid import write_group_examples

        if not dataset or roa or checkpoints:
            raise UserError("--group needs --dataset (and no --roa or --checkpoint)")
        click.echo(f"wrote {write_group_examples(group, dataset, out_dir, example, seed, data_root, download)}")
        return
    if roa:
        _plot_roa(checkpoints, out_dir, resolution, horizon, steps, data_root, download)
        return
    if checkpoints:
        raise UserError("--checkpoint needs --roa")
    from ..evaluation import ResultsStore
    from ..reports import load_records, plot_results

    for path in plot_results(load_records(results_dir), out_dir, eps, threat, dataset,
                             outcomes=ResultsStore(results_dir).outcomes):
        click.echo(f"wrote {path}")


def _plot_roa(checkpoints, out_dir, resolution, horizon, steps, data_root, download) -> None:
    from ..reports import write_roa_figure

    if not checkpoints:
        raise UserError("--roa needs at least one --checkpoint")
    for ckpt in checkpoints:
        paths, result = write_roa_figure(ckpt, out_dir, resolution, horizon, steps, data_root, download)
        iou = ", ".join(f"{v:.3f}" for v in result.iou)
        click.echo(f"{ckpt}: PRoA-RoA IoU [{iou}], mean {result.mean_iou:.3f}; unassigned "
                   f"{(result.roa < 0).mean():.1%}")
        if result.eq_max_real_eig is not None:
            eig = ", ".join(f"{v:+.3f}" for v in result.eq_max_real_eig)
            click.echo(f"  max Re(eig) of df/dz at the equilibria: [{eig}] (> 0: not attracting)")
        for path in paths:
            click.echo(f"wrote {path}")
